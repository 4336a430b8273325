"""Defects the xDS fuzz suite (tests/fuzz/test_xds_fuzz.py) found, each pinned by a direct test.

- A long, non-ASCII type URL echoed whole into the gRPC status overflowed the client's metadata limit: the
  client saw RESOURCE_EXHAUSTED (sometimes) instead of INVALID_ARGUMENT naming the field.
- A 100 KB NACK message was logged whole and kept whole in the proxy status.
- A proxy that disconnected while its first snapshot was being built left that snapshot in the cache for good.
"""

from __future__ import annotations

import asyncio

import grpc

from xds import types
from xds.cache import SnapshotCache
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.server.codec import DeltaRequest, ErrorDetail, SotwRequest, encode_delta_request, encode_sotw_request
from xds.server.delta import DeltaStreamState
from xds.server.sotw import SotwStreamState
from xds.server.state import MAX_NACK_MESSAGE_CHARS
from xds.testing.fake_proxy import node_bytes
from xds.testing.resources import simple_snapshot

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
# gRPC percent-encodes a non-ASCII status message byte by byte: 3,000 snowmen are 27 KB of trailer.
LONG_TYPE_URL = "type.googleapis.com/" + "\u2603" * 3_000


async def status_of(port: int, method: str, messages: list[bytes]) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(ADS + method)()
        try:
            for message in messages:
                await call.write(message)
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return await call.code(), await call.details() or ""


async def test_a_huge_type_url_is_refused_with_a_short_reason(
    xds: tuple[SnapshotCache, XdsServer, int],
) -> None:
    _, _, port = xds
    sotw = encode_sotw_request(SotwRequest(node=node_bytes("p1"), type_url=LONG_TYPE_URL))
    delta = encode_delta_request(DeltaRequest(node=node_bytes("p1"), type_url=LONG_TYPE_URL))
    for method, message in (("StreamAggregatedResources", sotw), ("DeltaAggregatedResources", delta)):
        code, details = await status_of(port, method, [message])
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, details[:200])
        assert "type_url: unknown or unsupported type" in details
        assert len(details) <= 1_100 and details.isascii(), len(details)


def test_a_huge_nack_message_is_clipped_in_status_and_actions() -> None:
    snapshot = simple_snapshot(1, {"a": 2}, "a")
    huge = "x" * 100_000
    sotw = SotwStreamState(ads=True)
    sotw.set_snapshot(snapshot)
    (sent,) = sotw.handle_request(SotwRequest(type_url=types.CLUSTER))
    nack = sotw.handle_request(
        SotwRequest(type_url=types.CLUSTER, response_nonce=sent.nonce, error_detail=ErrorDetail(13, huge))  # type: ignore[union-attr]
    )
    delta = DeltaStreamState(ads=True)
    delta.set_snapshot(snapshot)
    (dsent,) = delta.handle_request(DeltaRequest(type_url=types.CLUSTER))
    dnack = delta.handle_request(
        DeltaRequest(type_url=types.CLUSTER, response_nonce=dsent.nonce, error_detail=ErrorDetail(13, huge))  # type: ignore[union-attr]
    )
    for state, actions in ((sotw, nack), (delta, dnack)):
        (status,) = state.type_status()
        assert status.nack is not None
        assert status.nack.message.startswith("xxxx")
        assert len(status.nack.message) < MAX_NACK_MESSAGE_CHARS + 50
        assert "more characters" in status.nack.message
        assert all(len(getattr(a, "message", "")) < MAX_NACK_MESSAGE_CHARS + 50 for a in actions)


async def test_a_proxy_gone_before_its_first_snapshot_leaves_nothing_in_the_cache() -> None:
    built = asyncio.Event()
    cache = SnapshotCache()

    async def slow_build(identity: ProxyIdentity) -> None:
        await asyncio.sleep(0.2)  # the proxy disconnects meanwhile
        cache.set_snapshot(identity.id, simple_snapshot(1, {"a": 2}, "a"))
        built.set()

    cache.on_new_proxy = slow_build
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    try:
        first = encode_sotw_request(SotwRequest(node=node_bytes("gone-1"), type_url=types.CLUSTER))
        code, _ = await status_of(port, "StreamAggregatedResources", [first])
        assert code is grpc.StatusCode.OK
        assert server.status() == []
        await asyncio.wait_for(built.wait(), 5)
        for _ in range(100):  # the build task's cleanup runs right after it
            if not server._new_proxy_tasks:
                break
            await asyncio.sleep(0.01)
        assert cache.proxy_ids() == []
    finally:
        await server.stop(0)
