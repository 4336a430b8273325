"""The grpc.aio server with protocol-level fake proxies (SotW and delta ADS), bad peers and cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from xds import metrics, types
from xds.cache import Snapshot, SnapshotCache
from xds.proxy import ProxyIdentity
from xds.server import SyncState, XdsServer
from xds.server.codec import (
    DeltaRequest,
    SotwRequest,
    decode_sotw_response,
    encode_delta_request,
    encode_sotw_request,
)
from xds.testing.fake_proxy import FakeProxy, node_bytes
from xds.testing.resources import mesh_resources, route_config

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
MESH = mesh_resources(3)


def mesh(route_target: str = "svc0", regex: str | None = None) -> Snapshot:
    routes = [(f"/svc{i}/", f"svc{i}") for i in range(3)] + [("/", route_target)]
    others = [r for r in MESH if r.type_url != types.ROUTE]
    return Snapshot.build([*others, route_config("outbound", routes, regex=regex)])


async def acked_everything(proxy: FakeProxy, snap: Snapshot) -> None:
    for t in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE):
        await proxy.wait_acked(t, snap.version(t), timeout=5)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """The proxy records an ACK when it sends it; the server sees it a moment later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def synced(server: XdsServer) -> bool:
    return bool(server.status()) and all(s.state is SyncState.SYNCED for s in server.status())


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_fake_proxy_syncs_then_gets_route_change(
    xds: tuple[SnapshotCache, XdsServer, int], delta: bool
) -> None:
    cache, server, port = xds
    first = mesh()
    cache.set_snapshot("p1", first)
    proxy = FakeProxy(f"127.0.0.1:{port}", "p1", {"mode": "sidecar", "admin": "127.0.0.1:1"}, delta=delta)
    await proxy.start()
    try:
        await acked_everything(proxy, first)
        assert proxy.names[types.ENDPOINT] == {"svc0", "svc1", "svc2"} and proxy.names[types.ROUTE] == {
            "outbound"
        }
        await until(lambda: synced(server))
        (status,) = server.status()
        assert status.proxy_id == "p1"
        assert status.flavour == ("delta" if delta else "sotw") and status.transport == "ads"
        assert status.identity.admin == "127.0.0.1:1"
        assert [p.id for p in server.proxies()] == ["p1"]
        responses = proxy.responses
        second = mesh(route_target="svc2")
        cache.set_snapshot("p1", second)
        await proxy.wait_acked(types.ROUTE, second.version(types.ROUTE), timeout=5)
        await until(lambda: synced(server))
        await asyncio.sleep(0.05)
        assert proxy.responses == responses + 1  # only RDS changed: exactly one response
    finally:
        await proxy.stop()


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_nack_is_reported_then_fixed(xds: tuple[SnapshotCache, XdsServer, int], delta: bool) -> None:
    cache, server, port = xds
    cache.set_snapshot("p1", mesh())
    bad = mesh(regex="(?=x)")

    def reject_bad(type_url: str, resp: object) -> str | None:
        return (
            "invalid regex"
            if type_url == types.ROUTE and resp.version_info == bad.version(types.ROUTE)
            else None
        )  # type: ignore[attr-defined]

    proxy = FakeProxy(f"127.0.0.1:{port}", "p1", delta=delta, nack_if=reject_bad)
    await proxy.start()
    try:
        await acked_everything(proxy, mesh())
        nacks_before = metrics.nacks.labels("RDS")._value.get()
        cache.set_snapshot("p1", bad)
        await proxy.wait_nacked(types.ROUTE, timeout=5)
        await until(lambda: server.status()[0].state is SyncState.NACKED)
        rds = server.status()[0].type("RDS")
        assert rds is not None and rds.state is SyncState.NACKED
        assert rds.nack is not None and rds.nack.message == "invalid regex"
        assert rds.nack.version == bad.version(types.ROUTE)
        assert server.status()[0].state is SyncState.NACKED
        assert metrics.nacks.labels("RDS")._value.get() == nacks_before + 1
        responses = proxy.responses
        cache.set_snapshot(
            "p1",
            Snapshot.build(
                list(bad.of(types.ROUTE).values()) + [r for r in MESH if r.type_url != types.ROUTE]
            ),
        )
        await asyncio.sleep(0.1)
        assert proxy.responses == responses  # same bad content: no NACK loop
        fixed = mesh(route_target="svc1")
        cache.set_snapshot("p1", fixed)
        await proxy.wait_acked(types.ROUTE, fixed.version(types.ROUTE), timeout=5)
        await until(lambda: synced(server))
    finally:
        await proxy.stop()


async def test_disconnect_cleans_up(xds: tuple[SnapshotCache, XdsServer, int]) -> None:
    cache, server, port = xds
    snap = mesh()
    cache.set_snapshot("gone", snap)
    proxy = FakeProxy(f"127.0.0.1:{port}", "gone")
    await proxy.start()
    await acked_everything(proxy, snap)
    assert metrics.connected_proxies._value.get() == 1
    await until(lambda: synced(server))
    await proxy.stop()
    for _ in range(100):
        if not server.status():
            break
        await asyncio.sleep(0.01)
    assert server.status() == [] and server.proxies() == []
    assert metrics.connected_proxies._value.get() == 0
    assert cache.watch_count() == 0 and cache.get("gone") is None


async def test_on_new_proxy_computes_first_snapshot(xds: tuple[SnapshotCache, XdsServer, int]) -> None:
    cache, _, port = xds
    seen: list[ProxyIdentity] = []
    snap = mesh()

    async def on_new(identity: ProxyIdentity) -> None:
        seen.append(identity)
        await asyncio.sleep(0.01)
        cache.set_snapshot(identity.id, snap)

    cache.on_new_proxy = on_new
    proxy = FakeProxy(f"127.0.0.1:{port}", "newbie", {"mode": "gateway", "namespace": "edge"})
    await proxy.start()
    try:
        await acked_everything(proxy, snap)
        assert [(i.id, str(i.mode), i.namespace) for i in seen] == [("newbie", "gateway", "edge")]
    finally:
        await proxy.stop()


async def _raw_call(
    port: int, method: str, payloads: list[bytes]
) -> tuple[grpc.StatusCode, str, list[bytes]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(method)()
        for p in payloads:
            await call.write(p)
        got: list[bytes] = []
        try:
            while True:
                msg = await asyncio.wait_for(call.read(), 2)
                if msg is grpc.aio.EOF:
                    break
                got.append(msg)
                if len(got) >= len(payloads):
                    call.cancel()
                    return grpc.StatusCode.OK, "", got
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", got
        return await call.code(), await call.details(), got


def _sotw(type_url: str, node: bytes | None = None) -> bytes:
    return encode_sotw_request(SotwRequest(type_url=type_url, node=node))


@pytest.mark.parametrize(
    ("method", "payload", "message"),
    [
        (ADS + "StreamAggregatedResources", b"\xff\xff\xff", "DiscoveryRequest"),
        (ADS + "StreamAggregatedResources", _sotw("", node_bytes("x")), "type_url: required"),
        (ADS + "StreamAggregatedResources", _sotw("type.googleapis.com/nope", node_bytes("x")), "unknown"),
        (ADS + "StreamAggregatedResources", _sotw(types.CLUSTER), "node: the first request"),
        (ADS + "StreamAggregatedResources", _sotw(types.CLUSTER, node_bytes("")), "node.id is empty"),
        (
            ADS + "StreamAggregatedResources",
            _sotw(types.CLUSTER, node_bytes("x", {"mode": "boat"})),
            "mecha.mode",
        ),
        (ADS + "StreamAggregatedResources", _sotw(types.CLUSTER, b"\x0a\xff"), "node: undecodable"),
        (ADS + "DeltaAggregatedResources", b"\x12\x05ab", "DeltaDiscoveryRequest"),
        (
            "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters",
            _sotw(types.LISTENER, node_bytes("x")),
            "sent on the CDS stream",
        ),
    ],
    ids=[
        "garbage",
        "no-type",
        "unknown-type",
        "no-node",
        "no-id",
        "bad-meta",
        "bad-node",
        "delta-garbage",
        "wrong-type",
    ],
)
async def test_bad_peers_get_invalid_argument_and_others_are_unaffected(
    xds: tuple[SnapshotCache, XdsServer, int], method: str, payload: bytes, message: str
) -> None:
    cache, server, port = xds
    snap = mesh()
    cache.set_snapshot("good", snap)
    good = FakeProxy(f"127.0.0.1:{port}", "good")
    await good.start()
    try:
        await acked_everything(good, snap)
        code, details, _ = await _raw_call(port, method, [payload])
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert message in details
        second = mesh(route_target="svc1")
        cache.set_snapshot("good", second)
        await good.wait_acked(types.ROUTE, second.version(types.ROUTE), timeout=5)
        assert [s.proxy_id for s in server.status()] == ["good"]
        assert server.counters.streams_rejected >= 1
    finally:
        await good.stop()


async def test_garbage_after_a_good_first_request_ends_only_that_stream(
    xds: tuple[SnapshotCache, XdsServer, int],
) -> None:
    cache, server, port = xds
    cache.set_snapshot("x", mesh())
    code, details, _ = await _raw_call(
        port, ADS + "StreamAggregatedResources", [_sotw(types.CLUSTER, node_bytes("x")), b"\x22\x09ab"]
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "runs past the end" in details
    await asyncio.sleep(0.05)
    assert server.status() == []


@pytest.mark.parametrize(
    ("service", "method", "type_url"),
    [
        ("envoy.service.cluster.v3.ClusterDiscoveryService", "StreamClusters", types.CLUSTER),
        ("envoy.service.listener.v3.ListenerDiscoveryService", "StreamListeners", types.LISTENER),
        ("envoy.service.route.v3.RouteDiscoveryService", "StreamRoutes", types.ROUTE),
        ("envoy.service.endpoint.v3.EndpointDiscoveryService", "StreamEndpoints", types.ENDPOINT),
    ],
)
async def test_per_type_sotw_services(
    xds: tuple[SnapshotCache, XdsServer, int], service: str, method: str, type_url: str
) -> None:
    cache, _, port = xds
    snap = mesh()
    cache.set_snapshot("pt", snap)
    names = {types.ROUTE: ["outbound"], types.ENDPOINT: ["svc1"]}.get(type_url, [])
    req = encode_sotw_request(SotwRequest(type_url="", node=node_bytes("pt"), resource_names=names))
    code, _, got = await _raw_call(port, f"/{service}/{method}", [req])
    assert code is grpc.StatusCode.OK and len(got) == 1
    resp = decode_sotw_response(got[0])
    assert resp.type_url == type_url and resp.version_info == snap.version(type_url)
    assert len(resp.resources) == (len(snap.of(type_url)) if not names else len(names))


async def test_per_type_delta_service(xds: tuple[SnapshotCache, XdsServer, int]) -> None:
    cache, _, port = xds
    cache.set_snapshot("pt", mesh())
    req = encode_delta_request(DeltaRequest(node=node_bytes("pt"), type_url=types.CLUSTER))
    code, _, got = await _raw_call(
        port, "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters", [req]
    )
    assert code is grpc.StatusCode.OK and len(got) == 1


async def test_push_throttle_limits_concurrent_pushes() -> None:
    cache = SnapshotCache()
    server = XdsServer(cache, max_concurrent_pushes=2)
    port = await server.start("127.0.0.1:0")
    proxies = [FakeProxy(f"127.0.0.1:{port}", f"p{i}") for i in range(6)]
    try:
        snap = mesh()
        for p in proxies:
            cache.set_snapshot(p.proxy_id, snap)
            await p.start()
        for p in proxies:
            await acked_everything(p, snap)
        second = mesh(route_target="svc2")
        for p in proxies:
            cache.set_snapshot(p.proxy_id, second)
        for p in proxies:
            await p.wait_acked(types.ROUTE, second.version(types.ROUTE), timeout=5)
        assert 1 <= server.throttle.peak <= 2
    finally:
        for p in proxies:
            await p.stop()
        await server.stop(0.1)
