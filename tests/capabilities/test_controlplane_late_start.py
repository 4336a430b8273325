"""A capability service started beside its control plane (`mecha up` starts both at once) reads its first
config as soon as the control plane listens: a refused connection before the first config is retried within
STARTING_RETRY_S, not the 1 s retry_delay_s that held healthz (and "Mecha is up") up to a second longer.
Once a config was applied, an outage is retried every retry_delay_s as before."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
from aiohttp import web

from capabilities.config.controlplane import STARTING_RETRY_S, STARTING_WINDOW_S, ControlPlaneWatcher
from capabilities.config.documents import ResourceSet

LATE_S = 0.3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_first_config_soon_after_a_late_control_plane() -> None:
    port = free_port()
    applied: list[ResourceSet] = []

    async def on_update(resources: ResourceSet) -> None:
        applied.append(resources)

    async def dapr(request: web.Request) -> web.Response:
        if request.query.get("wait"):  # the long-poll after the first answer: nothing new
            await asyncio.sleep(30)
        return web.json_response({"version": "1", "components": []})

    app = web.Application()
    app.router.add_get("/api/v1/dapr", dapr)
    runner = web.AppRunner(app)
    watcher = ControlPlaneWatcher(f"http://127.0.0.1:{port}", "ratings", on_update, retry_delay_s=1.0)
    started = time.monotonic()
    watcher.start()
    try:
        await asyncio.sleep(LATE_S)  # the control plane is still starting: connections are refused
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        listening = time.monotonic()
        await asyncio.wait_for(watcher.first_applied.wait(), 5)
        late = time.monotonic() - listening
    finally:
        await watcher.stop()
        await runner.cleanup()
    assert applied and applied[0].version == "1"
    assert listening - started >= LATE_S
    assert late < STARTING_RETRY_S + 0.5, f"first config {late:.2f} s after the control plane listened"


def test_outage_after_a_config_keeps_the_normal_delay() -> None:
    async def on_update(resources: ResourceSet) -> None:
        return None

    watcher = ControlPlaneWatcher("http://127.0.0.1:1", "ratings", on_update, retry_delay_s=1.0)
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "refused"),
    )
    assert watcher._retry_delay(refused) == STARTING_RETRY_S
    watcher.first_applied.set()
    assert watcher._retry_delay(refused) == 1.0


def test_a_control_plane_that_never_comes_gets_the_normal_delay() -> None:
    """Refused past the start window: no longer 'still starting' (20 polls a second, debug-only, forever)."""
    import time

    async def on_update(resources: ResourceSet) -> None:
        return None

    watcher = ControlPlaneWatcher("http://127.0.0.1:1", "ratings", on_update, retry_delay_s=1.0)
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "refused"),
    )
    assert watcher._retry_delay(refused) == STARTING_RETRY_S
    watcher._started_at = time.monotonic() - STARTING_WINDOW_S - 1
    assert watcher._retry_delay(refused) == 1.0


def test_a_name_or_certificate_error_is_not_a_control_plane_starting() -> None:
    """Only a refused connection is retried fast before the first config: a wrong host name or a bad
    certificate will not fix itself within STARTING_RETRY_S, and must not be retried (and only logged at
    debug) 20 times a second."""
    import socket
    import ssl

    async def on_update(resources: ResourceSet) -> None:
        return None

    watcher = ControlPlaneWatcher("https://cp.invalid:1", "ratings", on_update, retry_delay_s=1.0)
    key = aiohttp.client_reqrep.ConnectionKey("cp.invalid", 1, True, True, None, None, None)
    dns = aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known"))
    cert = aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("self-signed"))
    assert watcher._retry_delay(dns) == 1.0
    assert watcher._retry_delay(cert) == 1.0
