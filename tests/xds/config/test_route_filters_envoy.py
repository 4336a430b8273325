"""Why the outbound listener keeps its fault and CORS filters without a VirtualService that uses them
(issue #17), on a real Envoy: adding a fault or a corsPolicy is then an RDS-only change, and it applies at
once to a connection the app already holds open (a listener change would leave that connection on the old
filter chain until it drains: measured while writing this, the abort never reached a pooled connection).
One Envoy, one in-process xDS server, one backend, one keep-alive client connection for the whole module."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from test_route_filters import CORS, CORS_VS, FAULT, FAULT_VS, HCM, PLAIN_VS, ROUTER, service

from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PROXY_ID = "route-filters"


@dataclass
class Rig:
    push: Callable[[str], None]
    envoy: EnvoyProcess
    outbound: int
    backend_hits: list[str]
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def request(self, method: str = "GET", **headers: str) -> tuple[int, dict[str, str]]:
        """One request on the module's single keep-alive connection (opened by the first request)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.outbound)
        assert self.reader is not None
        lines = [f"{method} /hello HTTP/1.1", "Host: web", *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        await self.reader.readexactly(int(fields.get("content-length", "0")))
        assert fields.get("connection") != "close", "Envoy closed the connection: the test needs it open"
        return int(head[0].split()[1]), fields

    async def listener(self) -> dict[str, Any]:
        _, body = await self.envoy.admin_get("/config_dump?resource=dynamic_listeners")
        for entry in json.loads(body).get("configs", []):
            if entry.get("name") == f"0.0.0.0_{self.outbound}":
                return dict(entry["active_state"])
        raise AssertionError("no outbound listener")

    async def outbound_filters(self) -> list[str]:
        listener = (await self.listener())["listener"]
        hcm = next(f for f in listener["filter_chains"][0]["filters"] if f["name"] == HCM)
        return [h["name"] for h in hcm["typed_config"]["http_filters"]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    from xds.cache import SnapshotCache

    hits: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        hits.append(request.method)
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_route("*", "/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    backend_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend_port).start()
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    outbound = free_port()
    meta = {"mode": "sidecar", "namespace": "default", "outbound_port": outbound}
    proxy = ProxyIdentity.from_node(PROXY_ID, {"mecha": meta})
    builder = SnapshotBuilder()

    def push(vs: str) -> None:
        docs, diags = load_text(service(backend_port) + vs, "mesh.yaml")
        result = compile_documents(docs)
        assert not diags and result.config is not None, [str(d) for d in result.errors]
        cache.set_snapshot(PROXY_ID, builder.build(result.config, [proxy])[PROXY_ID])

    yaml_text, _ = bootstrap_for(PROXY_ID, xds_port, meta, initial_fetch_timeout_s=0.5)
    envoy = EnvoyProcess(yaml_text, tmp_path_factory.mktemp("route-filters"), name=PROXY_ID)
    rig = Rig(push, envoy, outbound, hits)
    try:
        push(PLAIN_VS)
        await envoy.start(timeout=20)
        yield rig
    finally:
        if rig.writer is not None:
            rig.writer.close()
        await envoy.stop()
        await server.stop(0)
        await runner.cleanup()


async def until_status(rig: Rig, wanted: int, method: str = "GET", **headers: str) -> dict[str, str]:
    deadline = time.monotonic() + 10  # the RDS push lands a moment after set_snapshot
    while True:
        status, fields = await rig.request(method, **headers)
        if status == wanted:
            return fields
        assert time.monotonic() < deadline, (status, fields)
        await asyncio.sleep(0.05)


async def test_a_fault_added_later_applies_to_the_open_connection(rig: Rig) -> None:
    rig.push(PLAIN_VS)
    await until_status(rig, 200)  # the connection is open and pooled from here on
    listener_before = await rig.listener()
    assert await rig.outbound_filters() == [FAULT, CORS, ROUTER]
    rig.push(FAULT_VS)
    await until_status(rig, 418)
    before = len(rig.backend_hits)
    assert (await rig.request())[0] == 418
    assert len(rig.backend_hits) == before  # aborted by Envoy, never forwarded
    assert await rig.listener() == listener_before  # an RDS-only change: the listener was not replaced
    rig.push(PLAIN_VS)
    await until_status(rig, 200)


async def test_a_cors_policy_added_later_answers_preflights_on_the_open_connection(rig: Rig) -> None:
    listener_before = await rig.listener()
    rig.push(CORS_VS)
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    deadline = time.monotonic() + 10
    while True:
        before = len(rig.backend_hits)
        status, fields = await rig.request("OPTIONS", **preflight)
        if fields.get("access-control-allow-origin") == "https://app.example.com":
            break
        assert time.monotonic() < deadline, (status, fields)
        await asyncio.sleep(0.05)
    assert status == 200 and len(rig.backend_hits) == before  # answered by Envoy's CORS filter
    assert await rig.listener() == listener_before
