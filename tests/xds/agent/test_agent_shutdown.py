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


def _agent_argv(tmp_path: Path, root_pem: bytes) -> list[str]:
    """An agent whose control plane refuses connections (nothing on port 1)."""
    from xds.agent.launch import issue_for

    state = tmp_path / "state"
    credential = issue_for(
        state, PROXY, {"mode": "sidecar", "namespace": "default", "labels": {}, "apps": []}
    )
    root = tmp_path / "root-cert.pem"
    root.write_bytes(root_pem)
    return [sys.executable, "-m", "xds.agent", "--credential", str(credential), "--control-plane",
            "127.0.0.1:1", "--socket-dir", str(tmp_path / "sockets"), "--root-cert", str(root)]  # fmt: skip


async def test_sigterm_while_waiting_for_the_first_certificate_stops_at_once(tmp_path: Path) -> None:
    """The control plane is not reachable yet (the agent retries its first CSR for 30 s): a SIGTERM meanwhile
    ends the agent within a second or two, its servers shut down (no 'Event loop is closed' tracebacks)."""
    from xds.ca.authority import CertificateAuthority

    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    argv = _agent_argv(tmp_path, ca.root_pem)
    agent = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    sockets = tmp_path / "sockets"
    for _ in range(200):  # the sockets open before the first certificate
        if (sockets / "sds.sock").exists() and (sockets / "xds.sock").exists():
            break
        await asyncio.sleep(0.05)
    assert (sockets / "sds.sock").exists()
    agent.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(agent.communicate(), 5)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    log = err.decode()
    assert agent.returncode == 0, log
    assert "Traceback" not in log and "Exception ignored" not in log, log


async def test_a_root_file_that_is_no_certificate_is_refused_by_name(tmp_path: Path) -> None:
    argv = _agent_argv(tmp_path, b"not a certificate\n")
    agent = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(agent.communicate(), 10)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    log = err.decode()
    assert agent.returncode == 1, log
    assert "root-cert.pem" in log and "no PEM certificate" in log, log
    assert "Traceback" not in log and "Exception ignored" not in log, log
