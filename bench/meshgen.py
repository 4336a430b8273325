"""Generate a synthetic mesh as Istio YAML: n services, each 1 HTTP port, 2 subsets (v1/v2), one
VirtualService with a 90/10 split and 2 WorkloadEntry endpoints. Reusable: `generate_mesh(n) -> str`."""

from __future__ import annotations

import sys

NAMESPACE = "default"


def service_docs(i: int, namespace: str = NAMESPACE, v1_weight: int = 90) -> str:
    name = f"svc{i:05d}"
    host = f"{name}.{namespace}.svc.cluster.local"
    a, b = divmod(i, 250)
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-v1, namespace: {namespace}}}
spec: {{address: 10.{a}.{b}.1, labels: {{app: {name}, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-v2, namespace: {namespace}}}
spec: {{address: 10.{a}.{b}.2, labels: {{app: {name}, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {name}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{name}]
  http:
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: {v1_weight}}}
    - {{destination: {{host: {name}, subset: v2}}, weight: {100 - v1_weight}}}
"""


def sidecar_doc(namespace: str) -> str:
    """A namespace-default Sidecar limiting egress to the namespace's own services (Istio best practice)."""
    return f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {namespace}}}
spec:
  egress:
  - hosts: ["./*"]
"""


def generate_mesh(
    n_services: int, namespace: str = NAMESPACE, namespaces: int = 1, sidecars: bool = False
) -> str:
    """namespaces > 1 spreads services round-robin over ns0..nsN-1; sidecars adds a Sidecar per namespace."""
    if namespaces <= 1:
        names = [namespace]
    else:
        names = [f"ns{k}" for k in range(namespaces)]
    docs = "".join(service_docs(i, names[i % len(names)]) for i in range(n_services))
    if sidecars:
        docs += "".join(sidecar_doc(ns) for ns in names)
    return docs


if __name__ == "__main__":
    sys.stdout.write(generate_mesh(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
