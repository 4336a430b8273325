"""echo-basic's h2c port (H2C_PORT, 3001: HTTP/2 over cleartext, the echo handler's answer) and the Go
suite's H2C prior-knowledge client (roundtripper.H2CPriorKnowledgeProtocol), both on the `h2` library:
aiohttp speaks only HTTP/1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

H2C_PORT = 3001
Respond = Callable[[str, str, str, list[tuple[str, str]]], tuple[int, list[tuple[str, str]], bytes]]


class _ServerConnection(asyncio.Protocol):
    """One HTTP/2 connection; `respond(method, path, authority, headers)` answers each request."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.requests: dict[int, list[tuple[str, str]]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:  # not HTTP/2 (echo-basic answers HTTP/1 with a 400)
            self.transport.write(self.conn.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = [(str(k), str(v)) for k, v in event.headers or []]
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._answer(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.transport.close()
        self.transport.write(self.conn.data_to_send())

    def _answer(self, stream_id: int) -> None:
        raw = self.requests.pop(stream_id, [])
        pseudo = {k: v for k, v in raw if k.startswith(":")}
        headers = [(k, v) for k, v in raw if not k.startswith(":")]
        status, out, body = self.respond(
            pseudo.get(":method", "GET"), pseudo.get(":path", "/"), pseudo.get(":authority", ""), headers
        )
        self.conn.send_headers(
            stream_id,
            [(":status", str(status)), ("content-length", str(len(body))), *out],
        )
        self.conn.send_data(stream_id, body, end_stream=True)


async def serve(host: str, port: int, respond: Respond) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _ServerConnection(respond), host, port)


@dataclass
class H2Response:
    status: int = 0
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


async def get(dial: str, authority: str, path: str, timeout: float) -> H2Response:  # noqa: ASYNC109
    """One GET over a new cleartext HTTP/2 connection with prior knowledge (no Upgrade)."""
    host, _, port = dial.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", authority)],
        end_stream=True,
    )
    writer.write(conn.data_to_send())
    out = H2Response()
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("connection closed before the response ended")
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    raise ConnectionError(f"HTTP/2 protocol error: {exc}") from exc
                for event in events:
                    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                        for k, v in event.headers or []:
                            if str(k) == ":status":
                                out.status = int(v)
                            else:
                                out.headers.setdefault(str(k).lower(), []).append(str(v))
                    elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                        body += event.data or b""
                        conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                        out.body = bytes(body)
                        return out
                    elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                        raise ConnectionError(f"stream reset: error code {event.error_code}")
                writer.write(conn.data_to_send())
    finally:
        writer.close()
