"""`mecha run` (and bench/sidecar_start_bench.py) start Envoy together with the capability service that starts
its agent: Envoy dials the agent's sockets before they exist and must be served once they do (the agent-mode
bootstrap retries every 25-250 ms: xds/agent/bootstrap.py)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from agent_helpers import served_control_plane

from xds.agent.bootstrap import AGENT_RETRY_BACK_OFF, XDS_CLUSTER, through_agent
from xds.bootstrap import BootstrapParams, render
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.timeout(120)
LABELS = {"app": "reviews", "version": "v1"}


def metadata() -> dict[str, object]:
    app = {"name": "reviews", "namespace": "default", "labels": LABELS, "app_port": free_port(),
           "inbound_port": free_port()}  # fmt: skip
    return {"mode": "sidecar", "namespace": "default", "labels": LABELS, "outbound_port": free_port(),
            "apps": [app]}  # fmt: skip


def test_the_agent_bootstrap_retries_its_agent_quickly(tmp_path: Path) -> None:
    doc = yaml.safe_load(through_agent(render(BootstrapParams("reviews-v1", 15012, free_port())), tmp_path))
    (service,) = doc["dynamic_resources"]["ads_config"]["grpc_services"]
    assert service["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    assert service["envoy_grpc"]["retry_policy"] == {"retry_back_off": AGENT_RETRY_BACK_OFF}


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
