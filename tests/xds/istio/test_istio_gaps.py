"""The last traffic gaps: locality load balancing, sourceLabels/sourceNamespace, Sidecar ingress / egress
port / ALLOW_ANY, hash policies on weighted routes and the per-namespace DR/VS choice (hash, Dapr invoke).
Every snapshot is also checked against the naive reference path (istio_helpers.snapshot)."""

from __future__ import annotations

from typing import Any

import pytest
from istio_helpers import compile_text, decoded, errors, proxy, routes_of, service_entry, snapshot

from xds import types
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentityError

CLUSTER = "outbound|9080||web.default.svc.cluster.local"
ZONES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints:
  - {address: 10.0.0.1, locality: r1/a, labels: {tier: gold}}
  - {address: 10.0.0.2, locality: r1/b}
  - {address: 10.0.0.3, locality: r2/c}
  - {address: 10.0.0.4, locality: r3/d}
"""


def dr(lb: str = "", outlier: bool = True) -> str:
    policy = "    outlierDetection: {consecutive5xxErrors: 1}\n" if outlier else ""
    if lb:
        policy += f"    loadBalancer: {{localityLbSetting: {lb}}}\n"
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
{policy or "    {}"}
"""


def cla(text: str, locality: str = "", **labels: str) -> list[tuple[str, int, int | None]]:
    """(locality, priority, locality weight) per LocalityLbEndpoints with endpoints, for one proxy."""
    who = proxy("p-" + locality.replace("/", "-"), labels=labels or None, locality=locality)
    eds = decoded(snapshot(text, who), "EDS")[CLUSTER]
    out = []
    for group in eds.get("endpoints", []):
        if not group.get("lb_endpoints"):
            continue
        loc = group.get("locality", {})
        name = "/".join(loc.get(k, "") for k in ("region", "zone")).strip("/")
        out.append((name, int(group.get("priority", 0)), group.get("load_balancing_weight")))
    return out


def test_failover_priorities_are_relative_to_the_proxy_locality() -> None:
    text = ZONES + dr("{failover: [{from: r1, to: r2}]}")
    assert cla(text, "r1/a") == [("r1/a", 0, 1), ("r1/b", 1, 1), ("r2/c", 2, 1), ("r3/d", 3, 1)]
    assert cla(text, "r1/b") == [("r1/a", 1, 1), ("r1/b", 0, 1), ("r2/c", 2, 1), ("r3/d", 3, 1)]
    # r3 has no failover rule: every other region is simply priority 3 -> compacted to 2
    assert cla(text, "r3/d") == [("r1/a", 1, 1), ("r1/b", 1, 1), ("r2/c", 1, 1), ("r3/d", 0, 1)]


def test_failover_needs_outlier_detection_and_can_be_disabled() -> None:
    assert {p for _, p, _ in cla(ZONES + dr("{failover: [{from: r1, to: r2}]}", outlier=False), "r1/a")} == {
        0
    }
    assert {p for _, p, _ in cla(ZONES + dr("{enabled: false}"), "r1/a")} == {0}
    # the mesh default (enabled, no explicit failover) still orders by locality once outliers are detected
    assert cla(ZONES + dr(), "r2/c")[2] == ("r2/c", 0, 1)
    cds = decoded(snapshot(ZONES + dr(), proxy(locality="r1/a")), "CDS")[CLUSTER]
    assert "locality_weighted_lb_config" not in cds.get("common_lb_config", {})  # only explicit failover
    cds = decoded(snapshot(ZONES + dr("{failover: [{from: r1, to: r2}]}")), "CDS")[CLUSTER]
    assert cds["common_lb_config"]["locality_weighted_lb_config"] == {}


def test_distribute_sets_locality_weights_and_drops_unlisted_localities() -> None:
    text = ZONES + dr('{distribute: [{from: "r1/*", to: {"r1/a": 70, "r2/*": 30}}]}', outlier=False)
    assert cla(text, "r1/b") == [("r1/a", 0, 70), ("r2/c", 0, 30)]
    assert len(cla(text, "r2/c")) == 4  # the rule is for proxies in r1 only


def test_failover_priority_labels_split_localities() -> None:
    text = ZONES + dr("{failoverPriority: [tier, topology.kubernetes.io/region]}")
    got = cla(text, "r2/c", tier="gold")
    # r1/a: tier matches, region does not -> 1; the rest miss the first label -> 2; then compacted
    assert got == [("r1/a", 0, 1), ("r1/b", 1, 1), ("r2/c", 1, 1), ("r3/d", 1, 1)]
    assert cla(text, "r1/b", tier="gold")[0] == ("r1/a", 0, 1)


def test_proxies_of_one_locality_share_the_cla() -> None:
    config = compile_text(ZONES + dr("{failover: [{from: r1, to: r2}]}")).config
    assert config is not None
    who = [proxy("a1", locality="r1/a"), proxy("a2", locality="r1/a"), proxy("b", locality="r1/b")]
    snaps = SnapshotBuilder().build(config, who)
    eds = {p.id: snaps[p.id].of(types.ENDPOINT)[CLUSTER] for p in who}
    assert eds["a1"] is eds["a2"] and eds["a1"].body != eds["b"].body


def test_bad_locality_input_is_refused_with_the_field() -> None:
    bad = compile_text(ZONES + dr('{distribute: [{from: "r1/*", to: {"r1/a": 60}}]}'))
    assert [e.field for e in errors(bad)] == [
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to"
    ]
    bad = compile_text(ZONES.replace("r3/d", "r3/d/e/f"))
    assert [e.field for e in errors(bad)] == ["spec.endpoints[3].locality"]
    with pytest.raises(ProxyIdentityError, match="locality"):
        proxy(locality="a/b/c/d")


SOURCE = (
    service_entry("reviews")
    + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: testers
    match: [{sourceLabels: {app: tester}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: team-b
    match: [{sourceNamespace: team-b, uri: {prefix: /b}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: rest
    route: [{destination: {host: reviews, subset: v1}}]
"""
)


def _route_names(who: Any) -> list[str]:
    return [
        r.get("name", "") for r in routes_of(snapshot(SOURCE, who), "reviews.default.svc.cluster.local:9080")
    ]


def test_source_labels_and_namespace_pick_routes_per_proxy() -> None:
    assert _route_names(proxy("t", labels={"app": "tester", "version": "x"})) == ["testers"]
    assert _route_names(proxy("o", labels={"app": "other"})) == ["rest"]  # dropped, never a catch-all
    assert _route_names(proxy("b", namespace="team-b")) == ["team-b", "rest"]


def test_route_config_is_shared_per_applicable_rule_set() -> None:
    config = compile_text(SOURCE).config
    assert config is not None
    who = [
        proxy("t1", labels={"app": "tester"}),
        proxy("t2", labels={"app": "tester", "version": "v9"}),
        proxy("o1", labels={"app": "a"}),
        proxy("o2", labels={"app": "b"}),
    ]
    snaps = SnapshotBuilder().build(config, who)
    rds = {p.id: snaps[p.id].of(types.ROUTE)["outbound"] for p in who}
    assert rds["t1"] is rds["t2"] and rds["o1"] is rds["o2"]
    assert rds["t1"].body != rds["o1"].body
    cds = {
        p.id: snaps[p.id].of(types.CLUSTER)["outbound|9080|v1|reviews.default.svc.cluster.local"] for p in who
    }
    assert cds["t1"] is cds["o1"]  # clusters do not depend on the client: still one object


def test_tcp_source_labels_choose_the_destination() -> None:
    text = (
        service_entry("db", port=5432, protocol="TCP")
        + service_entry("shadowdb", port=5432, protocol="TCP")
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {canary: "yes"}}]
    route: [{destination: {host: shadowdb}}]
  - route: [{destination: {host: db}}]
"""
    )

    def cluster(labels: dict[str, str]) -> str:
        who = proxy("c" + str(len(labels)), labels=labels, tcp_ports={"5432": 25432})
        listener = decoded(snapshot(text, who), "LDS")["0.0.0.0_5432"]
        return str(listener["filter_chains"][0]["filters"][0]["typed_config"]["cluster"])

    assert cluster({"canary": "yes"}).endswith("shadowdb.default.svc.cluster.local")
    assert cluster({}).endswith("|db.default.svc.cluster.local")


def sidecar(spec: str) -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default}}
spec:
{spec}
"""


def test_outbound_traffic_policy_picks_the_catch_all() -> None:
    allow = snapshot(service_entry("reviews") + sidecar("  outboundTrafficPolicy: {mode: ALLOW_ANY}"))
    (route,) = routes_of(allow, "allow_any")
    assert route["route"]["cluster"] == "PassthroughCluster"
    cds = decoded(allow, "CDS")["PassthroughCluster"]
    assert cds["cluster_type"]["name"] == "envoy.clusters.dynamic_forward_proxy"
    hcm = decoded(allow, "LDS")["0.0.0.0_15001"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_filters"][0]["name"] == "envoy.filters.http.dynamic_forward_proxy"
    block = snapshot(service_entry("reviews") + sidecar("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}"))
    assert routes_of(block, "block_all")[0]["direct_response"]["status"] == 502
    assert "PassthroughCluster" not in decoded(block, "CDS")


def test_sidecar_ingress_and_egress_port_listeners() -> None:
    spec = """  ingress:
  - port: {number: 18080, protocol: HTTP, name: http}
    defaultEndpoint: unix:///var/run/app.sock
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.0.9
    hosts: [./reviews.default.svc.cluster.local]
  - hosts: ["./*"]"""
    snap = snapshot(
        service_entry("reviews") + service_entry("ratings") + sidecar(spec), proxy(address="10.1.1.1")
    )
    lds = decoded(snap, "LDS")
    assert lds["virtualInbound_18080"]["address"]["socket_address"] == {
        "address": "10.1.1.1",
        "port_value": 18080,
    }
    endpoint = decoded(snap, "CDS")["inbound|18080||"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"] == {"pipe": {"path": "/var/run/app.sock"}}
    assert lds["127.0.0.9_9080"]["address"]["socket_address"]["address"] == "127.0.0.9"
    vhosts = [v["name"] for v in decoded(snap, "RDS")["9080"]["virtual_hosts"]]
    assert vhosts == ["reviews.default.svc.cluster.local:9080", "block_all"]  # ratings is not listed


def test_sidecar_port_conflicts_warn_and_bad_endpoints_are_refused() -> None:
    text = service_entry("reviews") + sidecar(
        "  ingress:\n  - port: {number: 15001}\n    defaultEndpoint: 127.0.0.1:8080"
    )
    config = compile_text(text).config
    assert config is not None
    builder = SnapshotBuilder()
    builder.build(config, [proxy()])
    assert [w.field for w in builder.warnings] == ["spec.ingress[0].port.number"]
    bad = compile_text(text.replace("127.0.0.1:8080", "10.0.0.1:8080"))
    assert [(e.field, e.code) for e in errors(bad)] == [("spec.ingress[0].defaultEndpoint", "bad-endpoint")]


HASHED = (
    service_entry("reviews")
    + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-default}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 5s, attributes: [{name: Secure}]}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: team-b}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""
)


def test_weighted_routes_carry_each_destinations_hash_policy() -> None:
    (route,) = routes_of(snapshot(HASHED), "reviews.default.svc.cluster.local:9080")
    assert route["route"]["hash_policy"] == [
        {"header": {"header_name": "x-default"}},
        {"cookie": {"name": "c", "ttl": "5s", "attributes": [{"name": "Secure"}]}},
    ]
    # istiod drops previous_hosts only for single-destination routes
    assert route["route"]["retry_policy"]["retry_host_predicate"]


def test_hash_policy_uses_the_destination_rule_the_namespace_sees() -> None:
    who = proxy("b", namespace="team-b")
    (route,) = routes_of(snapshot(HASHED, who), "reviews.default.svc.cluster.local:9080")
    assert route["route"]["hash_policy"] == [{"connection_properties": {"source_ip": True}}] * 2


def test_dapr_invoke_routes_honour_virtual_service_export_to() -> None:
    text = (
        service_entry("reviews")
        + service_entry("canary")
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http: [{route: [{destination: {host: canary}}]}]
"""
    )

    def invoke_cluster(namespace: str) -> str:
        snap = snapshot(text, proxy("d-" + namespace, namespace=namespace, dapr_http_port=3500))
        routes = decoded(snap, "RDS")["dapr-http"]["virtual_hosts"][0]["routes"]
        return str(next(r for r in routes if r["name"] == "invoke/reviews.default")["route"]["cluster"])

    assert invoke_cluster("default") == "outbound|9080||canary.default.svc.cluster.local"
    assert invoke_cluster("other") == "outbound|9080||reviews.default.svc.cluster.local"
