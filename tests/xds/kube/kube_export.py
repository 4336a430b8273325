"""Hand-written `kubectl get ... -A -o yaml` output for bookinfo (no API server here): the shapes kubectl
prints, server-set fields included (status, managedFields, resourceVersion, uid, last-applied annotations)."""

from __future__ import annotations

import json

# reviews pods: (pod name, pod IP, version)
REVIEWS_PODS = (
    ("reviews-v1-5b4d5c9c7f-8mxq2", "10.244.0.12", "v1"),
    ("reviews-v2-7c9f8d6b5d-kz4tw", "10.244.0.13", "v2"),
    ("reviews-v3-6d7f5b8c9a-p2vnr", "10.244.0.14", "v3"),
)
RATINGS_POD = ("ratings-v1-85c74b6cb4-q9xhd", "10.244.0.11")
PRODUCTPAGE_POD = ("productpage-v1-65b75f6885-n7qjv", "10.244.0.15")
# a pod that exists but is not ready: its slice lists it with ready: false
NOT_READY_POD = ("reviews-v1-5b4d5c9c7f-zz9ab", "10.244.0.16", "v1")


def _last_applied(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":")) + "\n"


def _managed_fields(manager: str) -> str:
    return f"""    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata:
          f:labels:
            .: {{}}
            f:app: {{}}
      manager: {manager}
      operation: Update
      time: "2024-05-02T10:11:12Z\""""


def _service(name: str, cluster_ip: str, port_yaml: str, extra_spec: str = "") -> str:
    applied = _last_applied({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}})
    return f"""- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {applied.strip()}
    creationTimestamp: "2024-05-02T10:11:12Z"
    labels:
      app: {name}
      service: {name}
{_managed_fields("kubectl-client-side-apply")}
    name: {name}
    namespace: default
    resourceVersion: "1{len(name)}34"
    uid: 0f3c9a7e-{len(name):04d}-4a8e-9c61-5d2b7e0c1a{len(name):02d}
  spec:
    clusterIP: {cluster_ip}
    clusterIPs:
    - {cluster_ip}
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
{port_yaml}
    selector:
      app: {name}
    sessionAffinity: None
    type: ClusterIP{extra_spec}
  status:
    loadBalancer: {{}}
"""


_HTTP_PORT = """    - name: http
      port: 9080
      protocol: TCP
      targetPort: 9080"""


def _slice_endpoint(pod: str, ip: str, ready: bool = True) -> str:
    return f"""  - addresses:
    - {ip}
    conditions:
      ready: {str(ready).lower()}
      serving: {str(ready).lower()}
      terminating: false
    nodeName: kind-worker
    targetRef:
      kind: Pod
      name: {pod}
      namespace: default
      uid: 3a1d2c4b-0000-4e5f-8a9b-{sum(map(ord, pod)):012d}
    zone: europe-west1-b"""


def _slice(service: str, suffix: str, endpoints: list[str], port: int = 9080, port_name: str = "http") -> str:
    body = "\n".join(endpoints)
    return f"""- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
{body}
  kind: EndpointSlice
  metadata:
    annotations:
      endpoints.kubernetes.io/last-change-trigger-time: "2024-05-02T10:12:40Z"
    creationTimestamp: "2024-05-02T10:11:12Z"
    generateName: {service}-
    generation: 4
    labels:
      app: {service}
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: {service}
      service: {service}
{_managed_fields("kube-controller-manager")}
    name: {service}-{suffix}
    namespace: default
    ownerReferences:
    - apiVersion: v1
      blockOwnerDeletion: true
      controller: true
      kind: Service
      name: {service}
      uid: 0f3c9a7e-0000-4a8e-9c61-5d2b7e0c1a00
    resourceVersion: "2291"
    uid: 6e0b7a31-{len(service):04d}-4c1e-b0a2-{suffix}00000
  ports:
  - name: {port_name}
    port: {port}
    protocol: TCP
"""


def _pod(name: str, ip: str, app: str, version: str, account: str) -> str:
    return f"""- apiVersion: v1
  kind: Pod
  metadata:
    annotations:
      istio.io/rev: default
      kubectl.kubernetes.io/default-container: {app}
      sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"]}}'
    creationTimestamp: "2024-05-02T10:11:20Z"
    generateName: {name.rsplit("-", 1)[0]}-
    labels:
      app: {app}
      pod-template-hash: {name.rsplit("-", 2)[1]}
      security.istio.io/tlsMode: istio
      service.istio.io/canonical-name: {app}
      service.istio.io/canonical-revision: {version}
      version: {version}
{_managed_fields("kubelet")}
    name: {name}
    namespace: default
    ownerReferences:
    - apiVersion: apps/v1
      blockOwnerDeletion: true
      controller: true
      kind: ReplicaSet
      name: {name.rsplit("-", 1)[0]}
      uid: 9d8c7b6a-0000-4f3e-8d2c-1b0a9f8e7d6c
    resourceVersion: "2288"
    uid: 3a1d2c4b-0000-4e5f-8a9b-{sum(map(ord, name)):012d}
  spec:
    containers:
    - image: docker.io/istio/examples-bookinfo-{app}-{version}:1.20.2
      imagePullPolicy: IfNotPresent
      name: {app}
      ports:
      - containerPort: 9080
        protocol: TCP
    serviceAccount: {account}
    serviceAccountName: {account}
  status:
    conditions:
    - lastProbeTime: null
      lastTransitionTime: "2024-05-02T10:11:40Z"
      status: "True"
      type: Ready
    hostIP: 172.18.0.2
    phase: Running
    podIP: {ip}
    podIPs:
    - ip: {ip}
"""


def kubernetes_export() -> str:
    """`kubectl get services,endpointslices,pods -A -o yaml` for bookinfo's reviews, ratings, productpage."""
    reviews_eps = [_slice_endpoint(p, ip) for p, ip, _ in REVIEWS_PODS]
    reviews_eps.append(_slice_endpoint(NOT_READY_POD[0], NOT_READY_POD[1], ready=False))
    items = [
        _service("productpage", "10.96.40.11", _HTTP_PORT),
        _service("ratings", "10.96.40.12", _HTTP_PORT),
        _service("reviews", "10.96.40.13", _HTTP_PORT),
        _slice("productpage", "x7k2p", [_slice_endpoint(*PRODUCTPAGE_POD)]),
        _slice("ratings", "m4q8z", [_slice_endpoint(*RATINGS_POD)]),
        _slice("reviews", "b9w3f", reviews_eps),
        _pod(PRODUCTPAGE_POD[0], PRODUCTPAGE_POD[1], "productpage", "v1", "bookinfo-productpage"),
        _pod(RATINGS_POD[0], RATINGS_POD[1], "ratings", "v1", "bookinfo-ratings"),
        *(_pod(p, ip, "reviews", v, "bookinfo-reviews") for p, ip, v in (*REVIEWS_PODS, NOT_READY_POD)),
    ]
    return "apiVersion: v1\nitems:\n" + "".join(items) + 'kind: List\nmetadata:\n  resourceVersion: ""\n'


def istio_export() -> str:
    """`kubectl get virtualservices,destinationrules,... -A -o yaml`: reviews split 10/20/70 over subsets."""
    applied = _last_applied({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService"})
    return f"""apiVersion: v1
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata:
    creationTimestamp: "2024-05-02T10:13:00Z"
    generation: 1
{_managed_fields("kubectl-client-side-apply")}
    name: reviews
    namespace: default
    resourceVersion: "3101"
    uid: 5b0c1d2e-0000-4a3b-9c8d-7e6f5a4b3c2d
  spec:
    host: reviews
    subsets:
    - labels:
        version: v1
      name: v1
    - labels:
        version: v2
      name: v2
    - labels:
        version: v3
      name: v3
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {applied.strip()}
    creationTimestamp: "2024-05-02T10:13:05Z"
    generation: 2
{_managed_fields("kubectl-client-side-apply")}
    name: reviews
    namespace: default
    resourceVersion: "3150"
    uid: 7c8d9e0f-0000-4b1c-8d2e-3f4a5b6c7d8e
  spec:
    hosts:
    - reviews
    http:
    - route:
      - destination:
          host: reviews
          subset: v1
        weight: 10
      - destination:
          host: reviews
          subset: v2
        weight: 20
      - destination:
          host: reviews
          subset: v3
        weight: 70
  status:
    observedGeneration: 2
    validationMessages:
    - documentationUrl: https://istio.io/latest/docs/reference/config/analysis/ist0101/
      level: ERROR
      type:
        code: IST0101
kind: List
metadata:
  resourceVersion: ""
"""
