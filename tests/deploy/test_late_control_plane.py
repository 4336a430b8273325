"""Envoy started before its control plane: it says so, keeps retrying, and serves once the server is up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from xds.bootstrap import BootstrapParams, render
from xds.runner.diagnose import explain_proxy, xds_connected
from xds.runner.procs import Child, Supervisor
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.e2e

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: ratings-v1, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {inbound}}}, labels: {{app: ratings, version: v1}}}}
"""


async def _get(url: str, host: str | None = None) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.text()


async def _until(check, within: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last is True:
                return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {within}s (last: {last!r})")


async def test_envoy_waits_for_a_late_control_plane_then_routes(tmp_path: Path) -> None:
    xds_port, api_port, app_port, outbound, inbound = (free_port() for _ in range(5))
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(CONFIG.format(inbound=inbound))
    metadata = {
        "mode": "sidecar",
        "outbound_port": outbound,
        "labels": {"app": "ratings", "version": "v1"},
        "apps": [{"name": "ratings", "app_port": app_port, "inbound_port": inbound,
                  "labels": {"app": "ratings", "version": "v1"}}],
    }  # fmt: skip
    bootstrap = render(
        BootstrapParams(proxy_id="ratings-v1", xds_port=xds_port, admin_port=free_port(), metadata=metadata)
    )
    envoy = EnvoyProcess(bootstrap, tmp_path, "ratings-v1")
    sup = Supervisor()
    admin = f"127.0.0.1:{envoy.admin_port}"
    try:
        app = [sys.executable, "-m", "xds.demo", "ratings", "--port", str(app_port)]
        await sup.start(Child("ratings", "app", app, tmp_path / "ratings.log"))
        await envoy.start(wait_ready=False)
        # No control plane yet: Envoy runs, says it is not connected, and the CLI explains the missing server.
        await _until(lambda: _is(xds_connected(admin), False), 10)
        explanation = await explain_proxy("ratings-v1", admin, f"127.0.0.1:{xds_port}")
        assert "not connected to the control plane" in explanation and "retrying" in explanation
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "xds.cli", "proxy-status", "--server", f"http://127.0.0.1:{api_port}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert status.returncode == 2 and "no control plane at" in status.stderr
        await asyncio.sleep(2)  # the control plane comes up 2 s later
        # this Envoy dials the control plane itself (no agent): the plaintext transition port; its own state
        # folder, so nothing is left in ./.mecha between runs
        serve = [sys.executable, "-m", "xds.cli", "serve", "--port", str(api_port), "--xds-port",
                 str(xds_port), "--config", str(config), "--insecure-xds",
                 "--state-dir", str(tmp_path / "state")]  # fmt: skip
        await sup.start(Child("control-plane", "control-plane", serve, tmp_path / "cp.log"))
        await _until(lambda: _is(xds_connected(admin), True), 20)
        await envoy.wait_ready(20)
        await _until(lambda: _routes(f"http://127.0.0.1:{outbound}/ratings"), 20)
        explanation = await explain_proxy("ratings-v1", admin, f"127.0.0.1:{xds_port}")
        assert "connected to the control plane" in explanation and "not connected" not in explanation
    finally:
        await envoy.stop()
        await sup.stop_all()


async def _is(value_coro, expected: object) -> bool:  # type: ignore[no-untyped-def]
    return (await value_coro) is expected


async def _routes(url: str) -> bool:
    status, body = await _get(url, host="ratings")
    return status == 200 and '"app": "ratings"' in body
