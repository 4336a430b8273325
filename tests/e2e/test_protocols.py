"""Protocols istiod handles through real Envoys (issue #14 item 8): WebSocket upgrades, and TCP-family
workload ports (tcp-*, mysql-*, redis-*, appProtocol tcp) proxied as TCP on the sidecar's inbound listener,
including a server that speaks first (a banner app and the real MariaDB), which an HTTP listener breaks.

Every connection crosses two Envoys: the client's (outbound listener) and the server's sidecar (inbound).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from conftest import backend_available
from protocol_rig import Rig, eventually, rig

from xds.testing.envoy import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BANNER = b"220 mecha-banner ready\r\n"


class Ports:
    def __init__(self) -> None:
        self.client_outbound = free_port()
        self.tcp_banner, self.tcp_mysql, self.tcp_redis = free_port(), free_port(), free_port()
        self.ws_app, self.banner_app = free_port(), free_port()
        self.ws_inbound, self.banner_inbound = free_port(), free_port()
        self.mysql_inbound, self.redis_inbound = free_port(), free_port()


def _service(name: str, port: int, port_name: str, protocol: str, inbound: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: {port_name}, protocol: {protocol}}}]
  endpoints: [{{address: 127.0.0.1, ports: {{{port_name}: {inbound}}}, labels: {{app: {name}}}}}]
"""


def _mesh(p: Ports) -> str:
    return "---\n".join(
        [
            _service("chat", 8080, "http-ws", "HTTP", p.ws_inbound),
            _service("banner", 2525, "tcp-banner", "TCP", p.banner_inbound),
            _service("db", 3306, "mysql", "MySQL", p.mysql_inbound),
            _service("cache", 6379, "redis", "Redis", p.redis_inbound),
        ]
    )


def _sidecar(app: str, app_port: int, inbound: int, **extra: str) -> dict[str, object]:
    binding = {"name": app, "app_port": app_port, "inbound_port": inbound, "labels": {"app": app}, **extra}
    return {"mode": "sidecar", "namespace": "default", "labels": {"app": app}, "apps": [binding]}


async def _ws_app(port: int) -> web.AppRunner:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(f"echo:{msg.data}")
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _banner_app(port: int) -> asyncio.Server:
    """Speaks first: the banner before reading anything, then echoes one line."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        await writer.drain()
        line = await reader.readline()
        writer.write(b"got " + line)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Rig, Ports]]:
    p = Ports()
    ws_runner = await _ws_app(p.ws_app)
    banner = await _banner_app(p.banner_app)
    try:
        async with rig(tmp_path_factory.mktemp("protocols")) as r:
            await r.apply(_mesh(p))
            client = {
                "mode": "sidecar",
                "namespace": "default",
                "outbound_port": p.client_outbound,
                "labels": {"app": "client"},
                "tcp_ports": {"2525": p.tcp_banner, "3306": p.tcp_mysql, "6379": p.tcp_redis},
            }
            await r.envoy("client", client)
            await r.envoy("chat-v1", _sidecar("chat", p.ws_app, p.ws_inbound))
            await r.envoy(
                "banner-v1", _sidecar("banner", p.banner_app, p.banner_inbound, port_name="tcp-banner")
            )
            await r.envoy("db-v1", _sidecar("db", 3306, p.mysql_inbound, port_name="mysql"))
            await r.envoy("cache-v1", _sidecar("cache", 6379, p.redis_inbound, app_protocol="tcp"))
            yield r, p
    finally:
        banner.close()
        await ws_runner.cleanup()


async def _read_first(port: int, n: int, send: bytes = b"") -> bytes:
    """Connect to a client-side TCP listener; optionally send first; what arrives within 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if send:
            writer.write(send)
            await writer.drain()
        return await asyncio.wait_for(reader.read(n), 5.0)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_websocket_upgrade_through_two_envoys(mesh: tuple[Rig, Ports]) -> None:
    _, p = mesh
    url = f"http://127.0.0.1:{p.client_outbound}/ws"
    async with aiohttp.ClientSession() as session:

        async def routed() -> bool:
            async with session.get(url, headers={"Host": "chat"}) as resp:
                return resp.status in (400, 426)  # the app answers a plain GET on /ws: routes are in

        await eventually(routed)
        async with session.ws_connect(
            url, headers={"Host": "chat"}, timeout=aiohttp.ClientWSTimeout(5)
        ) as ws:
            for text in ("hello", "again"):
                await ws.send_str(text)
                msg = await asyncio.wait_for(ws.receive(), 5.0)
                assert msg.type is aiohttp.WSMsgType.TEXT and msg.data == f"echo:{text}"


async def test_server_speaks_first_banner(mesh: tuple[Rig, Ports]) -> None:
    _, p = mesh

    async def greeted() -> bool:
        return await _read_first(p.tcp_banner, len(BANNER)) == BANNER

    await eventually(greeted)
    reader, writer = await asyncio.open_connection("127.0.0.1", p.tcp_banner)
    assert await asyncio.wait_for(reader.readexactly(len(BANNER)), 5.0) == BANNER
    writer.write(b"ping\r\n")
    assert await asyncio.wait_for(reader.readline(), 5.0) == b"got ping\r\n"
    writer.close()


async def test_mariadb_greeting_through_two_envoys(mesh: tuple[Rig, Ports]) -> None:
    backend_available("127.0.0.1", 3306, "MariaDB")
    _, p = mesh

    async def handshake() -> bool:
        data = await _read_first(p.tcp_mysql, 64)
        # MySQL protocol: 3-byte length, sequence 0, then protocol version 10 and the server version text
        return len(data) > 5 and data[3] == 0 and data[4] == 10

    await eventually(handshake)


async def test_redis_through_two_envoys(mesh: tuple[Rig, Ports]) -> None:
    backend_available("127.0.0.1", 6379, "Redis")
    _, p = mesh

    async def pong() -> bool:
        return await _read_first(p.tcp_redis, 7, b"PING\r\n") == b"+PONG\r\n"

    await eventually(pong)


async def test_tcp_app_inbound_listener_is_tcp_proxy(mesh: tuple[Rig, Ports]) -> None:
    r, p = mesh
    db = next(e for e in r.envoys if e.name == "db-v1")
    status, body = await db.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200
    assert f"virtualInbound_{p.mysql_inbound}" in body
    assert "envoy.filters.network.tcp_proxy" in body and "http_connection_manager" not in body
