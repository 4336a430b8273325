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


def generate_mesh(n_services: int, namespace: str = NAMESPACE) -> str:
    return "".join(service_docs(i, namespace) for i in range(n_services))


if __name__ == "__main__":
    sys.stdout.write(generate_mesh(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
