"""Istio config whose meaning rests on traffic capture, through a real Envoy (one client proxy, no iptables):

- ServiceEntry `resolution: NONE`: istiod's ORIGINAL_DST cluster sends a connection to the address the app
  dialled, which here is the proxy's own outbound listener: the request looped back into it. Mecha sends it
  to the entry's endpoints, else its single addresses, else the host by DNS.
- A port that declares no protocol: istiod sniffs it (HTTP, else TCP). Its local TCP listener (node metadata
  `tcp_ports`) does the same, so a raw TCP client (a Redis-like protocol on an unnamed port) works, and an
  HTTP client on that listener is routed as HTTP.

One Envoy, one in-process xDS server, the backends in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PROXY_ID = "no-capture-client"


@dataclass
class Rig:
    outbound: int
    http_backend: int
    kv_backend: int
    kv_local: int  # the client's tcp_ports listener for the unnamed port 6380
    http_sniffed_local: int  # ... and for the unnamed HTTP port 8081
    http_hits: list[str]
    envoy: EnvoyProcess


def _mesh(r: Rig) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy-endpoints, namespace: default}}
spec:
  hosts: [legacy-a.example.internal]
  resolution: NONE
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {r.http_backend}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy-addresses, namespace: default}}
spec:
  hosts: [legacy-b.example.internal]
  addresses: [127.0.0.1/32, 10.99.0.0/16]
  resolution: NONE
  ports: [{{number: 8080, name: http, protocol: HTTP, targetPort: {r.http_backend}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: kv, namespace: default}}
spec:
  hosts: [kv.example.internal]
  resolution: STATIC
  ports: [{{number: 6380, name: kv}}]
  endpoints: [{{address: 127.0.0.1, ports: {{kv: {r.kv_backend}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web.example.internal]
  resolution: STATIC
  ports: [{{number: 8081, name: web}}]
  endpoints: [{{address: 127.0.0.1, ports: {{web: {r.http_backend}}}}}]
"""


async def _kv_server(port: int) -> asyncio.Server:
    """A Redis-like line protocol: PING -> +PONG, ECHO x -> $x; the client speaks first, no HTTP at all."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command, _, arg = line.decode().strip().partition(" ")
            writer.write(b"+PONG\r\n" if command == "PING" else f"${arg}\r\n".encode())
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    from xds.cache import SnapshotCache

    hits: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        hits.append(request.host)
        return web.Response(text=f"hello {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    r = Rig(free_port(), free_port(), free_port(), free_port(), free_port(), hits, None)  # type: ignore[arg-type]
    await web.TCPSite(runner, "127.0.0.1", r.http_backend).start()
    kv = await _kv_server(r.kv_backend)
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    meta = {
        "mode": "sidecar",
        "namespace": "default",
        "outbound_port": r.outbound,
        "tcp_ports": {"6380": r.kv_local, "8081": r.http_sniffed_local},
    }
    proxy = ProxyIdentity.from_node(PROXY_ID, {"mecha": meta})
    docs, diags = load_text(_mesh(r), "mesh.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache.set_snapshot(PROXY_ID, SnapshotBuilder().build(result.config, [proxy])[PROXY_ID])
    yaml_text, _ = bootstrap_for(PROXY_ID, xds_port, meta, initial_fetch_timeout_s=0.5)
    r.envoy = EnvoyProcess(yaml_text, tmp_path_factory.mktemp("no-capture"), name=PROXY_ID)
    try:
        await r.envoy.start(timeout=20)
        yield r
    finally:
        await r.envoy.stop()
        await server.stop(0)
        kv.close()
        await runner.cleanup()


async def _get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as resp:
            return resp.status, await resp.text()


async def _eventually_get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    """The first request may race the listener's arrival over xDS: retry briefly on refused connections."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            return await _get(port, host, path)
        except aiohttp.ClientConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _upstream_requests(envoy: EnvoyProcess, cluster: str) -> int:
    _, body = await envoy.admin_get("/stats?filter=upstream_rq_total")
    key = f"cluster.{cluster}.upstream_rq_total: "
    return next((int(line.split(": ")[1]) for line in body.splitlines() if line.startswith(key)), 0)


@pytest.mark.parametrize("host", ["legacy-a.example.internal", "legacy-b.example.internal"])
async def test_resolution_none_reaches_the_service_not_the_outbound_listener(rig: Rig, host: str) -> None:
    before = len(rig.http_hits)
    status, body = await _eventually_get(rig.outbound, f"{host}:8080", "/legacy")
    assert (status, body) == (200, "hello /legacy")
    assert rig.http_hits[before:] == [f"{host}:8080"]  # one request reached the backend, nothing looped
    # an ORIGINAL_DST cluster would have sent it back to the outbound listener: one request per pass
    assert await _upstream_requests(rig.envoy, f"outbound|8080||{host}") == 1


async def _exchange(port: int, lines: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        out = []
        for line in lines:
            writer.write(line)
            await writer.drain()
            out.append(await asyncio.wait_for(reader.readline(), 5.0))
        return out
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_raw_tcp_on_an_unnamed_port_passes_through(rig: Rig) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            got = await _exchange(rig.kv_local, [b"PING\r\n", b"ECHO mecha\r\n"])
            break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert got == [b"+PONG\r\n", b"$mecha\r\n"]


async def test_http_on_an_unnamed_port_is_routed_as_http(rig: Rig) -> None:
    before = len(rig.http_hits)
    # the app dials its local listener for web:8081; sniffed as HTTP, the request is routed to web's cluster
    status, body = await _eventually_get(rig.http_sniffed_local, "web.example.internal:8081", "/sniffed")
    assert (status, body) == (200, "hello /sniffed")
    assert rig.http_hits[before:] == ["web.example.internal:8081"]
    assert await _upstream_requests(rig.envoy, "outbound|8081||web.example.internal") >= 1
