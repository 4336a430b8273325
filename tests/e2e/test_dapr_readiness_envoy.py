"""Until its capability service has loaded its components, the proxy's Envoy knows it is not ready (issue #10,
"No false not configured"): Envoy health-checks the service's readiness path on the capability cluster and,
with no panic routing, answers the Dapr API 503 itself; once the components arrive the cluster turns healthy
and the same calls are served. Real control plane (xDS), real Envoy, real `python -m capabilities`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from e2e_mesh import Mesh, demo_mesh, through_agent

from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e]

COMPONENTS = {
    "version": 1,
    "components": [
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "statestore"},
            "spec": {"type": "state.in-memory", "version": "v1", "metadata": []},
        }
    ],
}


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path / "state", delta=False) as found:
        yield found


async def component_source(port: int) -> web.AppRunner:
    """What the capability service long-polls for its components (GET /api/v1/dapr), started late."""

    async def dapr(request: web.Request) -> web.Response:
        if request.query.get("wait") == str(COMPONENTS["version"]):
            await asyncio.sleep(0.5)
            return web.Response(status=304)
        return web.json_response(COMPONENTS)

    app = web.Application()
    app.router.add_get("/api/v1/dapr", dapr)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def cluster_flags(envoy: EnvoyProcess, cluster: str) -> str:
    """health_flags of the cluster's one host in Envoy's admin /clusters."""
    _, text = await envoy.admin_get("/clusters")
    return next((line.rsplit("::", 1)[1] for line in text.splitlines() if line.startswith(f"{cluster}::")
                 and "::health_flags::" in line), "")  # fmt: skip


async def test_envoy_answers_503_until_the_capability_service_is_ready(mesh: Mesh, tmp_path: Path) -> None:
    source_port, http_port, dapr_port = free_port(), free_port(), free_port()
    capabilities = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "capabilities", "--app-id", "ready-check", "--dapr-http-port", str(http_port),
        "--dapr-grpc-port", "0", "--control-plane", f"http://127.0.0.1:{source_port}",
        stdout=(tmp_path / "capabilities.log").open("wb"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    meta: dict[str, Any] = {
        "mode": "sidecar", "namespace": "default", "address": "127.0.0.1", "apps": [],
        "dapr_http_port": dapr_port, "capabilities_http": f"127.0.0.1:{http_port}",
    }  # fmt: skip
    text, _admin = bootstrap_for("ready-check", mesh.stack.o.xds_port, meta)
    envoy = EnvoyProcess(await through_agent(mesh.stack, "ready-check", meta, text), tmp_path / "envoy")
    source: web.AppRunner | None = None
    state = f"http://127.0.0.1:{dapr_port}/v1.0/state/statestore"
    try:
        await envoy.start(wait_ready=True, timeout=20)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            deadline = time.monotonic() + 20
            while True:  # the service listens (not ready) and Envoy has its Dapr listener from xDS
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{http_port}/readyz") as direct:
                        async with http.get(f"{state}/k") as through:
                            if direct.status == 503 and through.status == 503:
                                break
                assert time.monotonic() < deadline, "service or Envoy's Dapr listener never came up"
                await asyncio.sleep(0.1)

            # not ready: Envoy's check failed, Envoy answers itself (the service never sees the call)
            assert "failed_active_hc" in await cluster_flags(envoy, "capabilities_http")
            async with http.get(f"{state}/k") as through:
                body = await through.text()
                assert through.status == 503, body
                assert "ERR_NOT_READY" not in body and "ERR_STATE_STORE_NOT_CONFIGURED" not in body, body

            source = await component_source(source_port)  # the components arrive
            deadline = time.monotonic() + 20
            while (flags := await cluster_flags(envoy, "capabilities_http")) != "healthy":
                assert time.monotonic() < deadline, f"capability cluster never healthy: {flags}"
                await asyncio.sleep(0.1)
            async with http.post(state, data=json.dumps([{"key": "k", "value": 7}])) as saved:
                assert saved.status == 204, await saved.text()
            async with http.get(f"{state}/k") as got:
                assert (got.status, await got.json()) == (200, 7)
    finally:
        with contextlib.suppress(Exception):
            await envoy.stop()
        if capabilities.returncode is None:
            capabilities.terminate()
            await capabilities.wait()
        if source is not None:
            await source.cleanup()
