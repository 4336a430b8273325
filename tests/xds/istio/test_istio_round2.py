"""Istio migration round two (issue #14, items 2-7): what istiod accepts, how it routes meanwhile, and the
diagnostics a migrating team reads."""

from __future__ import annotations

from istio_helpers import compile_text, decoded, errors, proxy, routes_of, service_entry, snapshot

from xds.pipeline import SnapshotBuilder


def _dr_with_outlier(extra: str = "") -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1{extra}}}
"""


def test_outlier_detection_always_sets_the_panic_threshold_like_istiod() -> None:
    # istiod applyOutlierDetection: healthy_panic_threshold = minHealthPercent, 0 when unset
    snap = snapshot(service_entry("web") + _dr_with_outlier())
    cluster = decoded(snap, "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {}  # Percent{value: 0}
    snap = snapshot(service_entry("web") + _dr_with_outlier(", minHealthPercent: 30"))
    cluster = decoded(snap, "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 30.0}


def test_no_outlier_detection_keeps_envoys_default_panic_threshold() -> None:
    cluster = decoded(snapshot(service_entry("web")), "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert "healthy_panic_threshold" not in cluster.get("common_lb_config", {})


def _tester_only_vs() -> str:
    return """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - match: [{sourceLabels: {app: tester}}]
    route: [{destination: {host: web, subset: v2}}]
"""


def test_source_labels_excluding_a_proxy_leave_it_the_default_route() -> None:
    # istiod skips the http routes whose sourceLabels exclude the proxy; none left: the host's default route
    text = service_entry("web") + _tester_only_vs()
    vhost = "web.default.svc.cluster.local:9080"
    plain = routes_of(snapshot(text, proxy("plain", labels={"app": "plain"})), vhost)
    assert [r["route"]["cluster"] for r in plain] == ["outbound|9080||web.default.svc.cluster.local"]
    assert plain[0]["match"] == {"prefix": "/"}
    tester = routes_of(snapshot(text, proxy("tester", labels={"app": "tester"})), vhost)
    assert [r["route"]["cluster"] for r in tester] == ["outbound|9080|v2|web.default.svc.cluster.local"]


def _vs(name: str, http: str, hosts: str = "[web]", gateways: str = "", created: str = "") -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    gw = f"\n  gateways: {gateways}" if gateways else ""
    return f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}{stamp}}}
spec:
  hosts: {hosts}{gw}
  http:
{http}
"""


def test_route_to_a_missing_host_or_subset_is_accepted_and_routes_to_a_cluster_that_is_not_there() -> None:
    # istiod: the route keeps its cluster name; the cluster does not exist, so Envoy answers 503 (NC)
    text = service_entry("web") + _vs(
        "web",
        "  - match: [{uri: {prefix: /later}}]\n    route: [{destination: {host: later}}]\n"
        "  - route: [{destination: {host: web, subset: v9}}]",
    )
    result = compile_text(text)
    assert result.ok, [str(d) for d in errors(result)]
    assert {d.code for d in result.diagnostics} >= {"dangling-host", "unknown-subset"}
    snap = snapshot(text)
    routes = routes_of(snap, "web.default.svc.cluster.local:9080")
    assert [r["route"]["cluster"] for r in routes] == [
        "outbound|9080||later.default.svc.cluster.local",
        "outbound|9080|v9|web.default.svc.cluster.local",
    ]
    clusters = decoded(snap, "CDS")
    assert "outbound|9080||later.default.svc.cluster.local" not in clusters
    assert "outbound|9080|v9|web.default.svc.cluster.local" not in clusters
    assert not compile_text(text, strict=True).ok  # --strict / MECHA_STRICT=1: today's refusal


def test_gateway_virtual_services_for_one_host_are_merged_oldest_first() -> None:
    gateway = """---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["web.example.com"]}]
"""
    text = (
        service_entry("web")
        + gateway
        + _vs(
            "a-young",
            "  - match: [{uri: {prefix: /young}}]\n    route: [{destination: {host: web}}]",
            '["web.example.com"]',
            "[gw]",
            "2024-06-01T00:00:00Z",
        )
        + _vs(
            "z-old",
            "  - match: [{uri: {prefix: /old}}]\n    route: [{destination: {host: web}}]",
            '["web.example.com"]',
            "[gw]",
            "2020-01-01T00:00:00Z",
        )
    )
    result = compile_text(text)
    assert result.ok, [str(d) for d in errors(result)]
    assert [d.code for d in result.diagnostics if d.code.startswith("vs-")] == ["vs-merged"]
    gw = proxy("gateway", mode="gateway", labels={"istio": "ingressgateway"})
    rds = decoded(SnapshotBuilder().build(result.config, [gw])[gw.id], "RDS")
    (vhost,) = [v for rc in rds.values() for v in rc["virtual_hosts"] if "web.example.com" in v["domains"]]
    assert [r["match"]["prefix"] for r in vhost["routes"]] == ["/old", "/young"]


def test_mesh_virtual_service_host_outside_the_registry_gets_a_virtual_host() -> None:
    # istiod: VirtualService hosts that are no service become domains of a virtual host on the port
    text = service_entry("web") + _vs(
        "uk", "  - route: [{destination: {host: web}}]", hosts='["uk.bookinfo.com"]'
    )
    result = compile_text(text)
    assert result.ok and not [d for d in result.diagnostics if d.code == "unknown-host"]
    rds = decoded(snapshot(text), "RDS")["outbound"]
    (vhost,) = [v for v in rds["virtual_hosts"] if v["name"] == "uk.bookinfo.com:9080"]
    assert vhost["domains"] == ["uk.bookinfo.com", "uk.bookinfo.com:9080"]
    assert [r["route"]["cluster"] for r in vhost["routes"]] == [
        "outbound|9080||web.default.svc.cluster.local"
    ]


def test_tcp_and_https_service_entry_ports_are_not_reported_as_unsupported() -> None:
    text = service_entry("db", port=5432, protocol="TCP") + service_entry("api", port=443, protocol="HTTPS")
    result = compile_text(text)
    assert result.ok
    assert [str(d) for d in result.diagnostics if "not supported" in d.message] == []


def test_every_route_to_a_missing_destination_is_named() -> None:
    text = service_entry("web") + _vs(
        "web",
        "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: gone}}]\n"
        "  - match: [{uri: {prefix: /b}}]\n    route: [{destination: {host: gone}}]\n"
        "  - route: [{destination: {host: gone, subset: v1}}]",
    )
    fields = [d.field for d in compile_text(text).diagnostics if d.code == "dangling-host"]
    assert fields == [
        "spec.http[0].route[0].destination.host",
        "spec.http[1].route[0].destination.host",
        "spec.http[2].route[0].destination.host",
    ]


def test_two_namespace_wide_sidecars_warn_as_istioctl_analyze() -> None:
    sidecar = """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: shop}}
spec:
  egress: [{{hosts: ["./*"]}}]
"""
    result = compile_text(sidecar.format(name="a") + sidecar.format(name="b"))
    assert result.ok
    found = [(d.location.name, d.code) for d in result.diagnostics if d.code == "sidecars-without-selector"]
    assert found == [("a", "sidecars-without-selector"), ("b", "sidecars-without-selector")]
    message = next(d.message for d in result.diagnostics if d.code == "sidecars-without-selector")
    assert "shop/a, shop/b" in message and "no workload selector" in message
