"""echo-basic's TCP mode (conformance/echo-basic/tcpserver, TCP_ECHO_SERVER set): on each connection the
welcome line, then PING -> PONG, IS_TLS -> true/false, TEST -> the pod context and TLS facts as JSON; plain on
port 3000 and, with the pod's certificate Secret mounted, TLS on 8443."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any

WELCOME = "Gateway API Test TCP Server\n"
TCP_PORT, TLS_PORT = 3000, 8443
_GO_VERSION = {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2", "TLSv1.1": "TLS 1.1", "TLSv1": "TLS 1.0"}


def server_context(cert_pem: bytes, key_pem: bytes, workdir: Any) -> ssl.SSLContext:
    """A server context for a pod's certificate (ssl loads chains from files only)."""
    crt, key = workdir / "tls.crt", workdir / "tls.key"
    crt.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


class TcpEchoPod:
    """One pod's TCP echo servers."""

    def __init__(self, ip: str, namespace: str, pod: str, tls: ssl.SSLContext | None) -> None:
        self.ip = ip
        self.context = {
            "namespace": namespace,
            "ingress": "",
            "service": "",
            "pod": pod,
            "tcpport": str(TCP_PORT),
            **({"tlsport": str(TLS_PORT)} if tls is not None else {}),
        }
        self.tls = tls
        self._sni: dict[int, str] = {}
        self._servers: list[asyncio.Server] = []
        if tls is not None:
            tls.sni_callback = self._remember_sni

    def _remember_sni(self, conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self._sni[id(conn)] = name or ""

    async def start(self) -> None:
        self._servers.append(await asyncio.start_server(self._plain, self.ip, TCP_PORT))
        if self.tls is not None:
            self._servers.append(await asyncio.start_server(self._secure, self.ip, TLS_PORT, ssl=self.tls))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, {**self.context, "isTLS": False})

    async def _secure(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("ssl_object")
        version = conn.version() if conn is not None else ""
        cipher = conn.cipher() if conn is not None else None
        facts = {
            "version": _GO_VERSION.get(version or "", version or ""),
            "serverName": self._sni.pop(id(conn), ""),
            "negotiatedProtocol": (conn.selected_alpn_protocol() or "") if conn is not None else "",
            "cipherSuite": cipher[0] if cipher else "",
        }
        tls = {k: v for k, v in facts.items() if v or k in ("version", "serverName", "cipherSuite")}
        await self._serve(reader, writer, {**self.context, "isTLS": True, "tls": tls})

    @staticmethod
    async def _serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: dict[str, Any]
    ) -> None:
        try:
            writer.write(WELCOME.encode())
            while line := await reader.readline():
                text = line.decode(errors="replace").rstrip("\r\n")
                if text == "TEST":
                    writer.write((json.dumps(payload) + "\n").encode())
                elif text == "IS_TLS":
                    writer.write(f"{str(payload['isTLS']).lower()}\n".encode())
                elif text == "PING":
                    writer.write(b"PONG\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
