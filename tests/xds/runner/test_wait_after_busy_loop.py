"""A readiness wait whose deadline passed while mecha up's event loop was busy elsewhere still looks once:
a capability service healthy since seconds was reported "not ready in time" without a single check (seen at
load 13-15: the runner's event loop held several seconds by an import; the service was then stopped while
its Envoy used its embedded agent, and `mecha up` failed with 'Envoy is running but not connected')."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from xds.demo.config import make_layout
from xds.runner.procs import Child
from xds.runner.stack import Stack, StackOptions


async def test_a_passed_deadline_still_gets_one_check(tmp_path: Path) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/v1.0/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stack = Stack(StackOptions(layout=make_layout("sidecar"), state_dir=tmp_path, api_port=1, xds_port=2))
    child = Child("capabilities-ratings-v1", "capabilities", ["true"], tmp_path / "c.log")
    try:
        await stack._wait_http(child, f"http://127.0.0.1:{port}/v1.0/healthz", time.monotonic() - 1)
    finally:
        await runner.cleanup()


def test_every_readiness_wait_polls_once_past_its_deadline() -> None:
    """The rounds of _wait_http, _converged and _capabilities_healthy_in_envoys (one helper for the three)."""
    from xds.runner.stack import polls

    assert sum(1 for _ in polls(time.monotonic() - 1)) == 1
    rounds = 0
    for _ in polls(time.monotonic() + 0.2):
        rounds += 1
        time.sleep(0.05)
    assert rounds >= 3
