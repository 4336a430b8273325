"""Fixtures for the xDS server tests: a started server + cache, aiohttp backends, backend-skip helper."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from xds.cache import SnapshotCache
from xds.server import XdsServer
from xds.testing.envoy import free_port


def require_server(host: str, port: int, name: str) -> None:
    """Skip (or fail when CI=true) when a backing server does not answer."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} at {host}:{port} does not answer: {exc}")
        pytest.skip(f"{name} at {host}:{port} does not answer: {exc}")


@pytest.fixture
async def xds() -> AsyncIterator[tuple[SnapshotCache, XdsServer, int]]:
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    try:
        yield cache, server, port
    finally:
        await server.stop(0.1)


@pytest.fixture
async def backends() -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """Start tiny HTTP backends that answer every GET with a fixed text; returns their port."""
    runners: list[web.AppRunner] = []

    async def start(text: str) -> int:
        async def handle(_: web.Request) -> web.Response:
            return web.Response(text=text)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()
