"""Translation: sharing, memoization, determinism, per-proxy listeners, retries."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from cfg_helpers import compile_text, decoded, sidecar

from xds import types
from xds.model.resources import Retry
from xds.pipeline import SnapshotBuilder
from xds.proxy import AppBinding, ProxyIdentity, ProxyMode
from xds.translate.route import retry_policy

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from meshgen import generate_mesh


def config(n: int = 5, text: str | None = None):  # type: ignore[no-untyped-def]
    result = compile_text(text or generate_mesh(n))
    assert result.config is not None
    return result.config


def test_mesh_resources_are_shared_objects_across_proxies() -> None:
    builder = SnapshotBuilder()
    a, b = sidecar("a"), sidecar("b")
    snaps = builder.build(config(), [a, b])
    for type_url in (types.CLUSTER, types.ENDPOINT):
        name = "outbound|8080|v1|svc00001.default.svc.cluster.local"
        assert snaps["a"].of(type_url)[name] is snaps["b"].of(type_url)[name]
    assert snaps["a"].of(types.ENDPOINT) is snaps["b"].of(types.ENDPOINT)
    assert snaps["a"].of(types.ROUTE)["outbound"] is snaps["b"].of(types.ROUTE)["outbound"]


def test_route_configs_are_shared_by_proxies_listening_on_different_ports() -> None:
    # Sidecars on one host each listen on their own ports; their route tables must still be one object.
    from dataclasses import replace

    a = sidecar("a")
    b = replace(sidecar("b"), outbound_port=16001, dapr_http_port=13500, dapr_grpc_port=15001)
    snaps = SnapshotBuilder().build(config(), [a, b])
    for name in ("outbound", "dapr-http", "dapr-grpc"):
        assert snaps["a"].of(types.ROUTE)[name] is snaps["b"].of(types.ROUTE)[name]
    assert snaps["a"].of(types.LISTENER) != snaps["b"].of(types.LISTENER)


def test_unchanged_resources_are_not_rebuilt_after_a_change() -> None:
    text = generate_mesh(5)
    builder = SnapshotBuilder()
    proxy = sidecar()
    before = builder.build(config(text=text), [proxy])[proxy.id]
    changed = text.replace("weight: 90}", "weight: 80}", 1).replace("weight: 10}", "weight: 20}", 1)
    misses = builder.memo.misses
    after = builder.build(config(text=changed), [proxy])[proxy.id]
    # one vhost + the route blobs + dapr routes of that service: clusters/endpoints all reused
    assert builder.memo.misses - misses <= 8
    for type_url in (types.CLUSTER, types.ENDPOINT, types.LISTENER):
        assert after.of(type_url) is before.of(type_url) or all(
            after.of(type_url)[n] is r for n, r in before.of(type_url).items()
        )
        assert after.version(type_url) == before.version(type_url)
    assert after.version(types.ROUTE) != before.version(types.ROUTE)
    rds = decoded(after, "RDS")["outbound"]["virtualHosts"][0]["routes"][0]["route"]["weightedClusters"]
    assert [c["weight"] for c in rds["clusters"]] == [80, 20]


def test_equal_inputs_give_byte_identical_snapshots() -> None:
    text = generate_mesh(4)
    proxy = sidecar()
    one = SnapshotBuilder().build(config(text=text), [proxy])[proxy.id]
    two = SnapshotBuilder().build(config(text=text), [proxy])[proxy.id]
    for type_url in types.TYPE_ORDER:
        assert {n: r.body for n, r in one.of(type_url).items()} == {
            n: r.body for n, r in two.of(type_url).items()
        }
        assert one.version(type_url) == two.version(type_url)


def test_memo_is_bounded_to_the_live_set() -> None:
    builder = SnapshotBuilder()
    builder.build(config(20), [sidecar()])
    big = len(builder.memo)
    builder.build(config(2), [sidecar()])
    assert len(builder.memo) < big / 5


def test_listeners_follow_the_proxy_ports() -> None:
    proxy = ProxyIdentity(
        id="n1",
        mode=ProxyMode.NODE,
        address="10.9.0.1",
        outbound_port=15001,
        apps=(
            AppBinding(name="a", app_port=8080, inbound_port=15006),
            AppBinding(name="g", app_port=9090, inbound_port=15007, app_protocol="grpc"),
            AppBinding(name="nope", app_port=None, inbound_port=15008),
        ),
    )
    snap = SnapshotBuilder().build(config(1), [proxy])["n1"]
    lds = decoded(snap, "LDS")
    assert sorted(lds) == ["0.0.0.0_15001", "virtualInbound_15006", "virtualInbound_15007"]
    assert lds["virtualInbound_15007"]["address"]["socketAddress"]["address"] == "10.9.0.1"
    cds = decoded(snap, "CDS")
    assert "inbound|9090||g" in cds and "inbound|8080||a" in cds
    opts = cds["inbound|9090||g"]["typedExtensionProtocolOptions"]
    assert "http2ProtocolOptions" in str(opts)
    rds = decoded(snap, "RDS")
    assert rds["inbound|15007||"]["virtualHosts"][0]["routes"][0]["route"]["cluster"] == "inbound|9090||g"


def test_gateway_proxy_gets_clusters_only_and_a_warning() -> None:
    builder = SnapshotBuilder()
    gw = replace(sidecar("gw"), mode=ProxyMode.GATEWAY)
    snap = builder.build(config(2), [gw])["gw"]
    assert snap.of(types.LISTENER) == {} and snap.of(types.ROUTE) == {}
    assert len(snap.of(types.CLUSTER)) >= 6
    assert [w.code for w in builder.warnings] == ["no-gateway"]  # no Gateway resource names it


def test_retry_policy_conversion_follows_istiod() -> None:
    assert retry_policy(Retry(attempts=0)) is None
    default = retry_policy(None)
    assert default is not None and default.num_retries == 2 and default.retriable_status_codes == [503]
    custom = retry_policy(Retry(attempts=4, retry_on="5xx,429,reset"))
    assert custom is not None
    assert custom.retry_on == "5xx,reset,retriable-status-codes"
    assert custom.retriable_status_codes == [429] and custom.num_retries == 4


def test_dapr_routes_invoke_by_path_and_header_then_capabilities() -> None:
    snap = SnapshotBuilder().build(config(2), [sidecar()])["productpage-v1"]
    routes = decoded(snap, "RDS")["dapr-http"]["virtualHosts"][0]["routes"]
    names = [r["name"] for r in routes]
    assert names[:2] == ["invoke/svc00000", "invoke/svc00000.default"]
    assert names[-1] == "capabilities" and routes[-1]["route"]["cluster"] == "capabilities_http"
    header = next(r for r in routes if r["name"] == "app-id/svc00001")
    assert header["requestHeadersToRemove"] == ["dapr-app-id"]
    assert routes[0]["route"]["prefixRewrite"] == "/"
    assert [c["weight"] for c in routes[0]["route"]["weightedClusters"]["clusters"]] == [90, 10]
