"""`mecha agent` stopping while Envoy's SDS streams are open (its capability service ends, or SIGTERM): the
streams end and the agent exits without an error in its log. Before, gRPC cancelled each open stream at the
end of the server's grace period and logged "Exception not handled" with a CancelledError traceback per
stream, on every sidecar stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from agent_helpers import served_control_plane

from xds import types
from xds.agent.sds import SDS_SERVICE
from xds.ca.secrets import ROOT_SECRET, WORKLOAD_SECRET
from xds.server.codec import SotwRequest, encode_sotw_request
from xds.testing.fake_proxy import node_bytes

pytestmark = pytest.mark.timeout(90)
PROXY = "reviews-v1"


async def test_sigterm_with_open_sds_streams_logs_no_error(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        credential = cp.credential(PROXY)
        sockets = tmp_path / "sockets"
        err = tmp_path / "agent.err"
        argv = [sys.executable, "-m", "xds.agent", "--credential", str(credential), "--control-plane",
                cp.xds, "--socket-dir", str(sockets), "--root-cert", str(cp.root)]  # fmt: skip
        with err.open("wb") as stderr:
            agent = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr, env={**os.environ}
            )
        assert agent.stdout is not None
        try:
            ready = await asyncio.wait_for(agent.stdout.readline(), 30)
            assert ready.startswith(b"mecha agent ready:"), err.read_text()
            channel = grpc.aio.insecure_channel(f"unix:{sockets / 'sds.sock'}")
            calls = []
            for name in (WORKLOAD_SECRET, ROOT_SECRET):  # as Envoy opens them: a stream per secret
                stream: asyncio.Queue[bytes | None] = asyncio.Queue()
                call = channel.stream_stream(f"/{SDS_SERVICE}/StreamSecrets")(_queued(stream))
                stream.put_nowait(
                    encode_sotw_request(SotwRequest("", node_bytes(PROXY), [name], types.SECRET, "", None))
                )
                assert isinstance(await asyncio.wait_for(call.read(), 10), bytes)
                calls.append(call)
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 10) == 0
            for call in calls:
                await asyncio.wait_for(call.code(), 5)
            await channel.close()
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
    log = err.read_text()
    assert "ready" in log
    assert "ERROR" not in log and "Traceback" not in log, log


async def _queued(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (request := await queue.get()) is not None:
        yield request
