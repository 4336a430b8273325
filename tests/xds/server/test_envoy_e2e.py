"""Real Envoy against the server: SotW ADS, delta ADS and per-type SotW streams.

Traffic flows; a route change is applied; a snapshot Envoy NACKs (RE2 rejects "(?=x)") shows as NACKED with
Envoy's message while traffic keeps the old config; a corrected snapshot is ACKed; the server is killed under
traffic and restarted on the same port: Envoy keeps serving and resyncs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from xds.cache import SnapshotCache
from xds.server import SyncState, XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port, per_type_bootstrap
from xds.testing.resources import simple_snapshot

pytestmark = pytest.mark.e2e


async def body_of(session: aiohttp.ClientSession, port: int) -> str:
    try:
        async with session.get(f"http://127.0.0.1:{port}/x", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return f"{resp.status} {await resp.text()}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"error {exc!r}"


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def proxy_state(server: XdsServer) -> SyncState | None:
    status = server.status()
    return status[0].state if status else None


@pytest.mark.parametrize("flavour", ["sotw", "delta", "per-type"])
async def test_real_envoy_change_nack_fix_and_server_restart(
    tmp_path: Path, backends: Callable[[str], Awaitable[int]], flavour: str
) -> None:
    one, two = await backends("one"), await backends("two")
    listen = free_port()
    xds_cluster = "mecha_xds" if flavour == "per-type" else None

    def snapshot(route_to: str, regex: str | None = None) -> object:
        return simple_snapshot(listen, {"a": one, "b": two}, route_to, regex=regex, xds_cluster=xds_cluster)

    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    cache.set_snapshot("envoy-1", snapshot("a"))  # type: ignore[arg-type]
    yaml_text, _ = bootstrap_for("envoy-1", xds_port, {"mode": "sidecar"}, delta=flavour == "delta")
    if flavour == "per-type":
        yaml_text = per_type_bootstrap(yaml_text)
    envoy = EnvoyProcess(yaml_text, tmp_path, name=f"envoy-{flavour}")
    restarted: XdsServer | None = None
    try:
        await envoy.start(timeout=15)
        async with aiohttp.ClientSession() as http:

            async def serves(text: str) -> bool:
                return await body_of(http, listen) == f"200 {text}"

            await until(lambda: serves("one"), "traffic to backend one")
            expected_transport = "per-type" if flavour == "per-type" else "ads"
            assert server.status()[0].transport == expected_transport
            assert server.status()[0].flavour == ("delta" if flavour == "delta" else "sotw")

            async def synced(srv: XdsServer) -> bool:
                return proxy_state(srv) is SyncState.SYNCED

            await until(lambda: synced(server), "SYNCED")

            # Route change.
            cache.set_snapshot("envoy-1", snapshot("b"))  # type: ignore[arg-type]
            await until(lambda: serves("two"), "route switched to backend two")
            await until(lambda: synced(server), "SYNCED after the change")

            # NACK: RE2 rejects the lookahead; Envoy keeps the old routes.
            cache.set_snapshot("envoy-1", snapshot("a", regex="(?=x)"))  # type: ignore[arg-type]

            async def nacked() -> bool:
                return proxy_state(server) is SyncState.NACKED

            await until(nacked, "NACKED")
            rds = server.status()[0].type("RDS")
            assert rds is not None and rds.nack is not None
            assert "(?=" in rds.nack.message  # Envoy's own message, e.g. "invalid perl operator: (?="
            assert await serves("two")

            # Corrected snapshot is accepted.
            cache.set_snapshot("envoy-1", snapshot("a"))  # type: ignore[arg-type]
            await until(lambda: serves("one"), "corrected route served")
            await until(lambda: synced(server), "SYNCED after the fix")

            # Kill the control plane under traffic: Envoy keeps serving its last config.
            await server.stop(0)
            for _ in range(5):
                assert await serves("one")
                await asyncio.sleep(0.05)
            cache2 = SnapshotCache()
            cache2.set_snapshot("envoy-1", snapshot("b"))  # type: ignore[arg-type]
            restarted = XdsServer(cache2)
            assert await restarted.start(f"127.0.0.1:{xds_port}") == xds_port
            await until(lambda: serves("two"), "resync after restart", timeout=20)
            await until(lambda: synced(restarted), "SYNCED after restart", timeout=10)
            assert (await envoy.admin_get("/ready"))[0] == 200
    finally:
        await envoy.stop()
        await server.stop(0)
        if restarted is not None:
            await restarted.stop(0)
