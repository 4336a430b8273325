"""The agent dials several control-plane replicas through one gRPC channel (`--control-plane a:p,b:p`)."""

from __future__ import annotations

import grpc
import pytest

from xds.agent.channel import channel_target, open_channel
from xds.testing.envoy import free_port


def test_one_address_is_unchanged_and_several_become_one_target() -> None:
    assert channel_target("cp.example:15012") == "cp.example:15012"
    assert channel_target("127.0.0.1:15012, 127.0.0.2:15112") == "ipv4:127.0.0.1:15012,127.0.0.2:15112"
    assert channel_target("localhost:1,127.0.0.1:1").startswith("ipv4:127.0.0.1:1")  # names resolved, deduped
    assert channel_target("[::1]:15012,[::1]:15112") == "ipv6:[::1]:15012,[::1]:15112"
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        channel_target("127.0.0.1:1,nope")


async def serve(port: int, name: str) -> grpc.aio.Server:
    """A stand-in replica answering /test.Replica/Who with its name."""

    async def who(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return name.encode()

    handler = grpc.unary_unary_rpc_method_handler(who)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Replica", {"Who": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def who(channel: grpc.aio.Channel) -> str:
    call = channel.unary_unary("/test.Replica/Who")
    return bytes(await call(b"", timeout=5, wait_for_ready=True)).decode()


async def test_a_dead_replica_is_skipped_and_a_stopped_one_is_left() -> None:
    dead, first_port, second_port = free_port(), free_port(), free_port()
    first, second = await serve(first_port, "first"), await serve(second_port, "second")
    channel = open_channel(f"127.0.0.1:{dead},127.0.0.1:{first_port},127.0.0.1:{second_port}", None)
    try:
        assert await who(channel) == "first"  # past the dead one, in order
        await first.stop(None)
        assert await who(channel) == "second"  # the same channel, on the replica still up
    finally:
        await channel.close()
        await second.stop(None)
