"""`mecha run` (and bench/sidecar_start_bench.py) start Envoy together with the capability service that starts
its agent: Envoy dials the agent's sockets before they exist and must be served once they do (the agent-mode
bootstrap retries every 10-100 ms: xds/agent/bootstrap.py)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from agent_helpers import served_control_plane

from xds.agent.bootstrap import XDS_CLUSTER, through_agent
from xds.bootstrap import BootstrapParams, render
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.timeout(120)
LABELS = {"app": "reviews", "version": "v1"}


def metadata() -> dict[str, object]:
    app = {"name": "reviews", "namespace": "default", "labels": LABELS, "app_port": free_port(),
           "inbound_port": free_port()}  # fmt: skip
    return {"mode": "sidecar", "namespace": "default", "labels": LABELS, "outbound_port": free_port(),
            "apps": [app]}  # fmt: skip


async def test_envoy_retries_a_missing_agent_at_least_ten_times_a_second(tmp_path: Path) -> None:
    """Envoy on the agent-mode bootstrap, no agent yet: its connection attempts to xds.sock, counted by Envoy
    itself, come at least 10 times a second (one every 50 ms on average: retries at most 0.1 s apart), so
    Envoy is on the agent's sockets soon after they open. The control plane's policy (0.25-2 s) makes ~1 a
    second, the agent-mode one before (25-250 ms) ~6."""
    rendered = render(BootstrapParams("reviews-v1", 15012, free_port(), metadata=metadata()))
    envoy = EnvoyProcess(through_agent(rendered, tmp_path / "sockets"), tmp_path / "envoy")
    await envoy.start(wait_ready=False)
    try:
        await asyncio.sleep(0.5)  # past the first attempts' short back-offs
        first, started = await attempts(envoy), time.monotonic()
        await asyncio.sleep(2)
        last, elapsed = await attempts(envoy), time.monotonic() - started
    finally:
        await envoy.stop()
    assert first >= 1, "Envoy never tried the agent's socket"
    assert (last - first) / elapsed >= 10, f"{last - first} attempts in {elapsed:.2f} s"


async def attempts(envoy: EnvoyProcess) -> int:
    """Connections Envoy has attempted to the agent's xds.sock (each refused: nothing listens)."""
    status, body = await envoy.admin_get(f"/stats?filter=^cluster.{XDS_CLUSTER}.upstream_cx_total$")
    assert status == 200, body
    return int(body.split(":")[1])


async def test_envoy_started_before_its_agent_is_served_once_the_agent_listens(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        credential = cp.credential("reviews-v1")
        sockets = credential.parent
        rendered = render(BootstrapParams("reviews-v1", cp.xds_port, free_port(), metadata=metadata()))
        envoy = EnvoyProcess(through_agent(rendered, sockets), tmp_path / "envoy")
        await envoy.start(wait_ready=False)
        agent = None
        try:
            await asyncio.sleep(1.5)  # Envoy has dialed the missing sockets several times by now
            assert not (sockets / "xds.sock").exists()
            agent_log = tmp_path / "agent.log"
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "xds.agent", "--credential", str(credential), "--control-plane", cp.xds,
                "--root-cert", str(cp.root), "--socket-dir", str(sockets),
                stdout=agent_log.open("wb"), stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            token = (cp.state / "api-token").read_text().strip()
            deadline = time.monotonic() + 30
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
                while True:
                    async with session.get(f"http://127.0.0.1:{cp.api_port}/api/v1/proxies") as resp:
                        rows = (await resp.json())["proxies"]
                    row = next((r for r in rows if r.get("proxy_id") == "reviews-v1"), None)
                    if row is not None and "SYNCED" in str(row.get("types")):
                        break
                    assert time.monotonic() < deadline, f"never synced; agent log:\n{agent_log.read_text()}"
                    await asyncio.sleep(0.1)
            status, _ = await envoy.admin_get("/ready")
            assert status == 200  # its listeners got their certificates from the agent's SDS too
        finally:
            await envoy.stop()
            if agent is not None:
                agent.terminate()
                await agent.wait()
