"""Kubernetes Service + EndpointSlice + Pod -> registry, as istiod builds it (issue #14 item 10)."""

from __future__ import annotations

from typing import Any

import pytest
from kube_export import (
    NOT_READY_POD,
    PRODUCTPAGE_POD,
    RATINGS_POD,
    REVIEWS_PODS,
    istio_export,
    kubernetes_export,
)

from xds import types
from xds.cache.snapshot import Snapshot
from xds.diagnostics import Diagnostic, Severity
from xds.kube import AddressMap, convert_protocol, registry_documents
from xds.pipeline import CompileResult, SnapshotBuilder, compile_documents, load_text, resource_to_dict
from xds.proxy import ProxyIdentity

REVIEWS = "reviews.default.svc.cluster.local"


def _compile(*files: tuple[str, str]) -> CompileResult:
    docs, diags = [], []
    for name, text in files:
        more, problems = load_text(text, name)
        docs += more
        diags += problems
    result = compile_documents(docs)
    result.diagnostics[:0] = diags
    return result


def _errors(result: CompileResult) -> list[str]:
    return [str(d) for d in result.diagnostics if d.severity is Severity.ERROR]


def _productpage() -> ProxyIdentity:
    meta = {"mode": "sidecar", "namespace": "default", "outbound_port": 15001}
    meta["labels"] = {"app": "productpage", "version": "v1"}
    return ProxyIdentity.from_node("productpage-v1", {"mecha": meta})


def _snapshot(result: CompileResult) -> Snapshot:
    assert result.config is not None, _errors(result)
    who = _productpage()
    return SnapshotBuilder().build(result.config, [who])[who.id]


def _decoded(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    url = types.FROM_SHORT[short]
    return {n: resource_to_dict(url, r.body, snake_case=True) for n, r in snap.of(url).items()}


def _addresses(cla: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for group in cla.get("endpoints", []):
        for lb in group.get("lb_endpoints", []):
            sock = lb["endpoint"]["address"]["socket_address"]
            out.append((sock["address"], sock["port_value"]))
    return sorted(out)


def test_bookinfo_export_routes_each_subset_to_its_pods() -> None:
    result = _compile(("k8s.yaml", kubernetes_export()), ("istio.yaml", istio_export()))
    assert _errors(result) == []
    snap = _snapshot(result)
    eds = _decoded(snap, "EDS")
    for _pod, ip, version in REVIEWS_PODS:
        assert _addresses(eds[f"outbound|9080|{version}|{REVIEWS}"]) == [(ip, 9080)], version
    everyone = _addresses(eds[f"outbound|9080||{REVIEWS}"])
    assert everyone == sorted((ip, 9080) for _p, ip, _v in REVIEWS_PODS)  # the not-ready pod is left out
    assert NOT_READY_POD[1] not in str(eds)
    assert _addresses(eds["outbound|9080||ratings.default.svc.cluster.local"]) == [(RATINGS_POD[1], 9080)]
    assert _addresses(eds["outbound|9080||productpage.default.svc.cluster.local"]) == [
        (PRODUCTPAGE_POD[1], 9080)
    ]

    routes = _decoded(snap, "RDS")["outbound"]
    vhost = next(v for v in routes["virtual_hosts"] if v["name"] == f"{REVIEWS}:9080")
    assert "reviews" in vhost["domains"]  # the short name a client in the namespace uses
    weighted = vhost["routes"][0]["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in weighted] == [
        (f"outbound|9080|v1|{REVIEWS}", 10),
        (f"outbound|9080|v2|{REVIEWS}", 20),
        (f"outbound|9080|v3|{REVIEWS}", 70),
    ]


def test_the_same_export_routes_the_same_without_server_fields() -> None:
    """resourceVersion/uid/status churn between two exports changes nothing the proxies get."""
    first = _snapshot(_compile(("k8s.yaml", kubernetes_export()), ("istio.yaml", istio_export())))
    churned = kubernetes_export().replace('resourceVersion: "2288"', 'resourceVersion: "9999"')
    second = _snapshot(_compile(("k8s.yaml", churned), ("istio.yaml", istio_export())))
    for short in ("CDS", "EDS", "RDS", "LDS"):
        assert _decoded(first, short) == _decoded(second, short)


def test_endpoints_carry_pod_labels_and_service_account() -> None:
    docs, _ = load_text(kubernetes_export(), "k8s.yaml")
    out, diags = registry_documents(docs)
    assert [d.kind for d in out] == ["ServiceEntry"] * 3
    reviews = next(d for d in out if d.location.name == "reviews")
    assert reviews.location.kind == "Service" and reviews.location.item == 2  # refusals point at the Service
    spec = reviews.body["spec"]
    assert spec["hosts"] == [REVIEWS]
    assert (spec["location"], spec["resolution"]) == ("MESH_INTERNAL", "STATIC")
    assert spec["ports"] == [{"number": 9080, "name": "http", "protocol": "HTTP"}]
    first = spec["endpoints"][0]
    assert first["address"] == REVIEWS_PODS[0][1]
    assert first["labels"]["version"] == "v1" and first["labels"]["security.istio.io/tlsMode"] == "istio"
    assert first["serviceAccount"] == "bookinfo-reviews"
    # Pod IPs are said to be unreachable from here (info, once per Service)
    pod_ip_notes = [d for d in diags if d.code == "kube-pod-ip"]
    assert len(pod_ip_notes) == 3 and all(d.severity is Severity.INFO for d in pod_ip_notes)


def test_address_map_points_endpoints_at_local_addresses() -> None:
    docs, _ = load_text(kubernetes_export(), "k8s.yaml")
    mapping = AddressMap.parse(
        {
            f"{REVIEWS_PODS[0][1]}:9080": "127.0.0.1:19081",
            f"default/{REVIEWS_PODS[1][0]}": "127.0.0.2",
            REVIEWS_PODS[2][1]: "localhost:19083",
        },
        "map.yaml",
    )
    out, diags = registry_documents(docs, mapping)
    reviews = next(d for d in out if d.location.name == "reviews").body["spec"]["endpoints"]
    assert [(e["address"], e["ports"]["http"]) for e in reviews] == [
        ("127.0.0.1", 19081),
        ("127.0.0.2", 9080),
        ("localhost", 19083),
    ]
    unmapped = [d for d in diags if d.code == "kube-pod-ip"]
    assert {d.location.name for d in unmapped} == {"ratings", "productpage"}
    assert all(d.severity is Severity.WARNING for d in unmapped)


@pytest.mark.parametrize(
    ("port", "name", "protocol", "app_protocol", "expected"),
    [
        (9080, "http", "TCP", None, "HTTP"),
        (9080, "http-web", "TCP", None, "HTTP"),
        (8080, "grpc-web-ui", "TCP", None, "GRPC-WEB"),
        (50051, "grpc", "TCP", None, "GRPC"),
        (6379, "redis-main", "TCP", None, "REDIS"),
        (3306, "", "TCP", None, "TCP"),  # well-known server-first port: never sniffed
        (8080, "web", "TCP", "http2", "HTTP2"),  # appProtocol wins over the name
        (8080, "http", "TCP", "kubernetes.io/h2c", "HTTP2"),
        (8443, "x", "TCP", "kubernetes.io/wss", "HTTPS"),
        (9000, "tcp-data", "TCP", None, "TCP"),
        (8080, "", "TCP", None, "AUTO"),  # undeclared: sniffed (HTTP or TCP), as istiod does
        (53, "dns", "UDP", None, None),
    ],
)
def test_port_protocol_selection_follows_istiod(
    port: int, name: str, protocol: str, app_protocol: str | None, expected: str | None
) -> None:
    assert convert_protocol(port, name, protocol, app_protocol) == expected


def _one(text: str) -> tuple[list[Any], list[Diagnostic]]:
    docs, diags = load_text(text, "svc.yaml")
    assert diags == []
    return registry_documents(docs)


def test_external_name_service_is_a_dns_alias() -> None:
    out, _ = _one("""apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  type: ExternalName
  externalName: db.example.com
  ports: [{name: tcp-pg, port: 5432}]
""")
    spec = out[0].body["spec"]
    assert spec["hosts"] == ["db.shop.svc.cluster.local"]
    assert (spec["resolution"], spec["location"]) == ("DNS", "MESH_EXTERNAL")
    assert spec["endpoints"] == [{"address": "db.example.com"}]
    assert spec["ports"] == [{"number": 5432, "name": "tcp-pg", "protocol": "TCP"}]


def test_headless_service_and_legacy_endpoints() -> None:
    out, diags = _one("""apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: cache, namespace: shop, annotations: {networking.istio.io/exportTo: "., istio-system"}}
  spec:
    clusterIP: None
    ports: [{port: 6379, targetPort: 6379}]
- apiVersion: v1
  kind: Endpoints
  metadata: {name: cache, namespace: shop}
  subsets:
  - addresses: [{ip: 10.1.0.5}, {ip: 10.1.0.6}]
    notReadyAddresses: [{ip: 10.1.0.7}]
    ports: [{port: 6379}]
""")
    spec = out[0].body["spec"]
    # no protocol declared: sniffed (a Redis client is proxied as TCP, an HTTP one as HTTP), as istiod does
    assert spec["ports"] == [{"number": 6379, "name": "auto-6379"}]
    assert [(e["address"], e["ports"]) for e in spec["endpoints"]] == [
        ("10.1.0.5", {"auto-6379": 6379}),
        ("10.1.0.6", {"auto-6379": 6379}),
    ]
    assert spec["exportTo"] == [".", "istio-system"]
    assert any(d.code == "kube-headless" and d.field == "spec.clusterIP" for d in diags)


def test_named_target_port_resolves_per_slice() -> None:
    out, _ = _one("""apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    ports: [{name: http, port: 80, targetPort: web}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: [{addresses: [10.2.0.9]}]
  ports: [{name: http, port: 8080, protocol: TCP}]
""")
    assert out[0].body["spec"]["endpoints"] == [{"address": "10.2.0.9", "ports": {"http": 8080}}]


def test_what_is_lost_is_said() -> None:
    _, diags = _one("""apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: [{addresses: [10.2.0.9], targetRef: {kind: Pod, name: web-0, namespace: default}}]
  ports: [{name: http, port: 80}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: gone-abc, namespace: default, labels: {kubernetes.io/service-name: gone}}
  addressType: IPv4
  endpoints: []
""")
    by_code = {d.code: d for d in diags}
    assert by_code["kube-udp"].field == "spec.ports[1].protocol"
    no_pod = by_code["kube-no-pod"]
    assert (no_pod.location.item, no_pod.field) == (1, "endpoints[0].targetRef")
    assert "default/web-0" in no_pod.message and "subset" in no_pod.message
    assert by_code["kube-orphan"].location.name == "gone-abc"
    assert all(d.severity is not Severity.ERROR for d in diags)


def test_malformed_service_is_refused_naming_file_item_and_field() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: ok, namespace: default}
  spec: {ports: [{name: http, port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: bad, namespace: default}
  spec: {ports: [{name: http, port: 70000}]}
"""
    result = _compile(("export.yaml", text))
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert [(d.location.file, d.location.document, d.location.item, d.field) for d in errors] == [
        ("export.yaml", 0, 1, "spec.ports[0].port")
    ]
    assert "70000" in errors[0].message
    assert "export.yaml doc 0 item 1 (Service default/bad)" in str(errors[0])


def test_pods_no_service_reads_are_reported_as_skipped() -> None:
    extra = """---
apiVersion: v1
kind: Pod
metadata: {name: batch-job-x1, namespace: default, labels: {app: batch}}
spec: {serviceAccountName: batch}
"""
    result = _compile(("k8s.yaml", kubernetes_export() + extra))
    assert _errors(result) == []
    assert [(loc.kind, loc.name) for loc in result.skipped] == [("Pod", "batch-job-x1")]
