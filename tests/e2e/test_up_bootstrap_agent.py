"""docs/quickstart.md's own-proxy flow on a shifted mesh: after `mecha up --port-offset N`, `mecha bootstrap
--agent-dir` in the same folder (no --server, no --xds-port) prints an agent command that dials the mesh's
xDS port, and a real Envoy behind that agent gets its config (SYNCED)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from mecha_up import MECHA, free_offset, interrupt, read_until, start_up

from xds.agent.agent import SDS_SOCKET, XDS_SOCKET
from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _user_env() -> dict[str, str]:
    """A user's shell: the mesh is found from the folder, not from MECHA_* variables."""
    unset = ("MECHA_STATE_DIR", "MECHA_SERVER", "MECHA_TOKEN")
    return {k: v for k, v in os.environ.items() if k not in unset}


async def _types(api: str, token: str, proxy_id: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"{api}/api/v1/proxies") as resp:
            rows = (await resp.json())["proxies"]
    return json.dumps([r.get("types") for r in rows if r.get("proxy_id") == proxy_id])


def test_a_proxy_bootstrapped_beside_an_offset_mecha_up_syncs(tmp_path: Path) -> None:
    offset = free_offset()
    up = start_up(tmp_path, "--port-offset", str(offset))
    try:
        read_until(up, "Mecha is up", 150)
        admin, app, inbound, outbound = free_port(), free_port(), free_port(), free_port()
        made = subprocess.run(
            [*MECHA, "bootstrap", "--id", "myapp-1", "--app", f"myapp:{app}:{inbound}",
             "--label", "app=myapp", "--admin-port", str(admin), "--outbound-port", str(outbound),
             "--agent-dir", "myapp-1", "-o", "myapp-1.yaml"],
            cwd=tmp_path, env=_user_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        line = next(row.strip() for row in made.stdout.splitlines() if row.strip().startswith("mecha agent"))
        argv = shlex.split(line)
        # failed before: 127.0.0.1:15012 (the unshifted default), where no control plane of this mesh listens
        assert argv[argv.index("--control-plane") + 1] == f"127.0.0.1:{DEFAULT_XDS_PORT + offset}"
        asyncio.run(_run_proxy(tmp_path, argv, offset))
    finally:
        interrupt(up)


async def _run_proxy(folder: Path, agent_argv: list[str], offset: int) -> None:
    """The printed agent, a real Envoy on the written bootstrap; the mesh's API reports it SYNCED."""
    sockets = folder / "myapp-1"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.cli", *agent_argv[1:], cwd=folder, env=_user_env(),
        stdout=(folder / "agent.log").open("wb"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    envoy = EnvoyProcess((folder / "myapp-1.yaml").read_text(), folder / "envoy")
    api = f"http://127.0.0.1:{DEFAULT_API_PORT + offset}"
    token = (folder / ".mecha" / "api-token").read_text().strip()
    try:
        for _ in range(200):
            if (sockets / XDS_SOCKET).exists() and (sockets / SDS_SOCKET).exists():
                break
            await asyncio.sleep(0.1)
        await envoy.start(wait_ready=False)
        for _ in range(300):
            if "SYNCED" in await _types(api, token, "myapp-1"):
                return
            await asyncio.sleep(0.1)
        agent_log = (folder / "agent.log").read_text()[-2000:]
        raise AssertionError(f"myapp-1 never synced; agent log:\n{agent_log}")
    finally:
        await envoy.stop()
        agent.terminate()
        await agent.wait()
