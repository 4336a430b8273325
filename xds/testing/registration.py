"""Mesh documents for tests of auto-registration (issue #15): a WorkloadGroup and the ServiceEntry that
selects its members, so proxies naming the group register endpoints a caller reaches by the service's host."""

from __future__ import annotations


def group_and_service(name: str, port: int = 9080, namespace: str = "default") -> str:
    """WorkloadGroup `name` (label app=<name>, port http=<port>, service account <name>) and ServiceEntry
    `name` (host <name>, STATIC, selecting app=<name>), as YAML for `mecha apply` or ControlPlane.apply."""
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  metadata: {{labels: {{app: {name}}}}}
  template: {{ports: {{http: {port}}}, serviceAccount: {name}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
"""
