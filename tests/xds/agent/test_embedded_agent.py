"""The mecha agent embedded in the capability service (issue #11): rotation keeps going whatever the Dapr
components do, and the certificate files for proxyless gRPC are written (0600) and replaced on rotation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from agent_helpers import ServedControlPlane, distinct_serials, serial_in, served_control_plane, wait_http

from capabilities.identity_agent import EmbeddedAgent
from xds.agent.agent import SDS_SOCKET, XDS_SOCKET, AgentConfig
from xds.agent.launch import issue_for
from xds.testing.envoy import free_port

CERT_TTL = {"MECHA_CERT_TTL": "2"}  # a new certificate every second (rotation at half the lifetime)
BROKEN_REDIS = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:%d"}
  - {name: dialTimeout, value: "200ms"}
"""


@contextlib.asynccontextmanager
async def capability_service(argv: list[str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "capabilities", *argv, stdout=out,
                                                    stderr=out, env={**os.environ})  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


def agent_flags(cp: ServedControlPlane, folder: Path) -> list[str]:
    return ["--agent-credential", str(cp.credential()), "--agent-control-plane", cp.xds,
            "--agent-root-cert", str(cp.root), "--agent-socket-dir", str(folder / "sockets"),
            "--agent-cert-dir", str(folder / "certs")]  # fmt: skip


async def test_rotation_continues_while_a_component_is_broken(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", CERT_TTL) as cp:
        resources = tmp_path / "components"
        resources.mkdir()
        (resources / "statestore.yaml").write_text(BROKEN_REDIS % free_port())  # nothing listens there
        http = free_port()
        argv = ["--app-id", "reviews", "--dapr-http-port", str(http), "--dapr-grpc-port", "0",
                "--resources-path", str(resources), *agent_flags(cp, tmp_path)]  # fmt: skip
        async with capability_service(argv, tmp_path / "capabilities.log") as proc:
            base = f"http://127.0.0.1:{http}"
            await wait_http(f"{base}/v1.0/healthz", 30, tmp_path / "capabilities.log", want=500)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/v1.0/state/statestore/k") as resp:
                    assert resp.status >= 400  # the broken component answers with its reason
                    assert "statestore" in await resp.text()
            serials = await distinct_serials(tmp_path / "certs", 6)
            assert len(serials) >= 4, f"only {len(serials)} certificates in 6 s with a 2 s lifetime"
            assert proc.returncode is None
            sockets = tmp_path / "sockets"
            assert (sockets / SDS_SOCKET).exists() and (sockets / XDS_SOCKET).exists()
            assert (sockets.stat().st_mode & 0o077) == 0
            for name in ("key.pem", "cert-chain.pem", "root-cert.pem"):
                assert ((tmp_path / "certs" / name).stat().st_mode & 0o077) == 0, name


async def test_blocked_or_failing_service_loop_does_not_stop_rotation(tmp_path: Path) -> None:
    """This test's event loop stands in for the capability service's: a component that blocks it (a
    synchronous call that hangs) or raises on it must not stop the embedded agent."""
    from capabilities.identity_agent import EmbeddedAgent

    async with served_control_plane(tmp_path / "cp", CERT_TTL) as cp:
        certs = tmp_path / "certs"
        config = AgentConfig(cp.credential(), cp.xds, tmp_path / "sockets", cp.root, cert_dir=certs)
        agent = EmbeddedAgent(config)
        agent.start()
        try:
            assert await asyncio.to_thread(agent.ready.wait, 30), "the embedded agent never got a certificate"

            async def broken_component() -> None:
                raise RuntimeError("component crashed")

            crashed = asyncio.create_task(broken_component())
            await asyncio.sleep(0)
            first = serial_in(certs)
            seen = {first}
            for _ in range(40):  # 4 s with the service's loop blocked: certificates keep coming
                time.sleep(0.1)  # noqa: ASYNC251 - the point: the service's loop is blocked
                seen.add(serial_in(certs))
            assert len(seen - {None}) >= 3, "rotation stopped while the service's loop was blocked"
            with pytest.raises(RuntimeError):
                await crashed
            assert agent.starts == 1  # never needed a restart
        finally:
            await asyncio.to_thread(agent.stop)
        assert agent.process is not None and agent.process.returncode is not None
        assert not agent._thread.is_alive()


async def test_an_agent_that_dies_is_started_again(tmp_path: Path) -> None:
    from capabilities.identity_agent import EmbeddedAgent

    async with served_control_plane(tmp_path / "cp", CERT_TTL) as cp:
        certs = tmp_path / "certs"
        config = AgentConfig(cp.credential(), cp.xds, tmp_path / "sockets", cp.root, cert_dir=certs)
        agent = EmbeddedAgent(config)
        agent.start()
        try:
            assert await asyncio.to_thread(agent.ready.wait, 30), "the embedded agent never got a certificate"
            first = agent.process
            assert first is not None
            first.kill()
            deadline = time.monotonic() + 15
            while agent.process is first and time.monotonic() < deadline:  # noqa: ASYNC110 - another thread
                await asyncio.sleep(0.05)
            assert agent.starts == 2, "the killed agent was not started again"
            before = serial_in(certs)
            serials = await distinct_serials(certs, 4)
            assert serials - {before}, "the restarted agent issued no new certificate"
        finally:
            await asyncio.to_thread(agent.stop)


LIFELINE = """
import sys, time
from pathlib import Path
from capabilities.identity_agent import EmbeddedAgent
from xds.agent.config import AgentConfig
credential, control_plane, sockets, root, certs = sys.argv[1:]
config = AgentConfig(Path(credential), control_plane, Path(sockets), Path(root), cert_dir=Path(certs))
agent = EmbeddedAgent(config)
agent.start()
assert agent.ready.wait(30)
print("PID", agent.process.pid, flush=True)
time.sleep(60)
"""


async def test_the_agent_ends_with_a_killed_service(tmp_path: Path) -> None:
    """SIGKILL of the capability service (no clean-up code runs) must not leave its agent behind, holding the
    proxy's credential and key and serving its sockets."""
    async with served_control_plane(tmp_path / "cp", CERT_TTL) as cp:
        argv = [
            str(cp.credential()),
            cp.xds,
            str(tmp_path / "sockets"),
            str(cp.root),
            str(tmp_path / "certs"),
        ]
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LIFELINE, *argv, stdout=asyncio.subprocess.PIPE
        )
        assert service.stdout is not None
        line = b""
        while not line.startswith(b"PID "):  # the agent's own "ready" line comes through this output first
            line = await asyncio.wait_for(service.stdout.readline(), 40)
            assert line, "the service ended before its agent was ready"
        agent_pid = int(line.split()[1])
        os.kill(agent_pid, 0)  # running
        service.kill()
        await service.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(agent_pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            os.kill(agent_pid, 9)
            raise AssertionError("the agent outlived its killed capability service")


class LateRestart(EmbeddedAgent):
    """An agent whose restart reaches its spawn late (a loaded machine): the test stops it in between."""

    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.restarting = threading.Event()
        self.children: list[subprocess.Popen[bytes]] = []

    def _spawn(self) -> bool:
        if self.children:  # a restart, not the first start
            self.restarting.set()
            time.sleep(0.5)
        spawned = super()._spawn()
        if self.process is not None and self.process not in self.children:
            self.children.append(self.process)
        return spawned


def test_stop_during_a_pending_restart_leaves_no_agent(tmp_path: Path) -> None:
    """stop() while the supervisor is restarting a crashed agent: no agent may be started after stop() began
    (it would serve the proxy's sockets with its key until the service exits)."""
    credential = issue_for(tmp_path / "state", "reviews-v1", {"mode": "sidecar"})
    # no control plane listens: the agent keeps asking for its first certificate, alive until stopped
    config = AgentConfig(credential, f"127.0.0.1:{free_port()}", tmp_path / "sockets")
    agent = LateRestart(config)
    agent.start()
    try:
        first = agent.children[0]
        first.kill()
        assert agent.restarting.wait(15), "the killed agent was never restarted"
        agent.stop()
        alive = [child.pid for child in agent.children if child.poll() is None]
        assert alive == [], f"agents still running after stop(): {alive}"
        assert not agent._thread.is_alive()
    finally:
        for child in agent.children:
            if child.poll() is None:
                child.kill()
                child.wait()
