"""mecha history / mecha rollback over the HTTP API of a real ControlPlane on the embedded SQLite store (the
same interface as PostgreSQL), and the API's answers for bad and unknown versions."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from xds.cli.main import main
from xds.controlplane.api import start_api
from xds.controlplane.auth import auth_headers
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: NAME}
spec:
  hosts: [NAME.example]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1}]
"""
SECRET_COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cache}
spec:
  type: state.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
  - {name: redisPassword, value: s3cr3t-value}
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, str, Path]]:
    state = tmp_path / "state"
    settings = Settings(xds_port=0, api_port=0, watch=False, state_dir=state)
    settings.insecure_xds = True
    cp = ControlPlane(settings)
    runner, port = await start_api(cp, "127.0.0.1", 0, state)
    await cp.start()
    try:
        yield cp, f"http://127.0.0.1:{port}", state
    finally:
        await cp.stop()
        await runner.cleanup()


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return main(list(argv))

    return await asyncio.to_thread(run), out.getvalue()


async def test_history_and_rollback_commands(server: tuple[ControlPlane, str, Path], tmp_path: Path) -> None:
    cp, url, state = server
    token = auth_headers(state)["Authorization"].removeprefix("Bearer ")
    await cp.apply([("one.yaml", SE.replace("NAME", "one")), ("cache.yaml", SECRET_COMPONENT)])
    await cp.apply([("two.yaml", SE.replace("NAME", "two"))])
    code, out = await cli("history", "--server", url, "--token", token)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "AT", "SOURCE", "CHANGES"]
    assert lines[1].split()[0] == "2" and "added ServiceEntry default/two" in lines[1]
    assert (
        lines[2].split()[0] == "1" and "added ServiceEntry default/one, Component default/cache" in lines[2]
    )
    code, out = await cli("rollback", "1", "--server", url, "--token", token)
    assert code == 0, out
    assert cp.store.version == 3 and {k[2] for k in cp.store.documents} == {"one", "cache"}
    code, out = await cli("rollback", "17", "--server", url, "--token", token)
    assert code == 1 and "version 17 is not in the history" in out
    async with aiohttp.ClientSession(headers=auth_headers(state)) as http:
        async with http.get(f"{url}/api/v1/config/history") as resp:
            body = await resp.text()
            assert resp.status == 200 and "s3cr3t-value" not in body
            assert (await resp.json())["versions"][0]["source"] == "rollback:1"
        async with http.post(f"{url}/api/v1/config/rollback?version=abc") as resp:
            assert resp.status == 400 and "version='abc'" in (await resp.json())["error"]
        async with http.post(f"{url}/api/v1/config/rollback?version=99") as resp:
            assert resp.status == 404
    async with aiohttp.ClientSession() as anonymous:  # a write: no token, no rollback
        async with anonymous.post(f"{url}/api/v1/config/rollback?version=1") as resp:
            assert resp.status == 401
    assert cp.store.version == 3
