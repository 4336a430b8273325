"""Stand-ins for the suite's `echo-basic` pods: one aiohttp app answering on each pod's own loopback address,
with the JSON the suite's roundtripper reads (conformance/echo-basic/echo-basic.go `RequestAssertions`:
path, host, method, proto, headers, httpPort, namespace, ingress, service, pod), the same special paths
(`/status/NNN`, `/health`, the `X-Echo-Set-Header` response headers, `?delay=`) and the same log line per
echoed request (the mirror tests look for it in the mirrored pods' logs)."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.conformance.gatewayapi import h2cecho
from tests.conformance.gatewayapi.grpcecho import GrpcEchoServer, PodContext
from tests.conformance.gatewayapi.tcpecho import TcpEchoPod, server_context

HTTP_PORT = 3000  # echo-basic's HTTP_PORT default, the targetPort of the suite's Services
HTTPS_PORT = 8443  # echo-basic's HTTPS_PORT default (served when the pod mounts a certificate)
_STATUS = re.compile(r"^/status/(\d\d\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    grpc: bool = False  # echo-basic with GRPC_ECHO_SERVER set: the gRPC echo service instead of HTTP
    tcp: bool = False  # TCP_ECHO_SERVER set: the TCP echo (tcpecho.py)
    tls: tuple[bytes, bytes] | None = None  # its mounted certificate Secret (tls.crt, tls.key): TLS on 8443


def _duration_s(text: str) -> float:
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"time: invalid duration {text!r}")
    return float(found.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[found.group(2)]


def _canonical(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey, as net/http shows request headers to echo-basic."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _echo_headers(request: web.Request) -> dict[str, str]:
    """X-Echo-Set-Header: `name:value,name:value` -> response headers, as writeEchoResponseHeaders does."""
    out: dict[str, str] = {}
    for item in request.headers.getall("X-Echo-Set-Header", []):
        for pair in item.split(","):
            name, _, value = pair.strip().partition(":")
            if name:
                out[name] = f"{out[name]},{value.strip()}" if name in out else value
    return out


class EchoPods:
    """Every pod of the suite's Deployments, served by one app: the pod is the address a request came to."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir
        self.pods: dict[str, Pod] = {}
        self.logs: dict[str, list[str]] = {}  # pod IP -> its stdout lines (the mirror tests read them)
        self._runners: list[web.AppRunner] = []  # one per start (the base pods, then each test's)
        self._grpc: list[GrpcEchoServer] = []
        self._tcp: list[TcpEchoPod] = []
        self._h2c: list[asyncio.Server] = []
        self._sni: dict[int, str] = {}  # id(SSLObject) -> the server name its client sent

    async def start(self, pods: list[Pod]) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        for pod in pods:
            self.pods[pod.ip] = pod
            tls = self._tls(pod)
            if pod.grpc:
                server = GrpcEchoServer(pod.ip, HTTP_PORT, PodContext(pod.namespace, pod.name))
                await server.start()
                self._grpc.append(server)
            elif pod.tcp:
                tcp = TcpEchoPod(pod.ip, pod.namespace, pod.name, tls)
                await tcp.start()
                self._tcp.append(tcp)
            else:
                await web.TCPSite(runner, pod.ip, HTTP_PORT).start()
                self._h2c.append(await h2cecho.serve(pod.ip, h2cecho.H2C_PORT, self._h2c_respond(pod)))
                if tls is not None:  # echo-basic's HTTPS_PORT with TLS_SERVER_CERT / TLS_SERVER_PRIVKEY
                    tls.sni_callback = self._remember_sni
                    await web.TCPSite(runner, pod.ip, HTTPS_PORT, ssl_context=tls).start()

    def _remember_sni(self, conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self._sni[id(conn)] = name or ""

    def _tls_assertions(self, request: web.Request) -> dict[str, str] | None:
        """echo-basic's TLSAssertions of an HTTPS request (the SNI the backend saw)."""
        conn = request.transport.get_extra_info("ssl_object") if request.transport else None
        if conn is None:
            return None
        cipher = conn.cipher()
        return {
            "version": conn.version() or "",
            "serverName": self._sni.get(id(conn), ""),
            "negotiatedProtocol": conn.selected_alpn_protocol() or "",
            "cipherSuite": cipher[0] if cipher else "",
        }

    def _h2c_respond(self, pod: Pod) -> h2cecho.Respond:
        """echo-basic's h2c port: the echo handler's JSON, its log line too."""

        def respond(
            method: str, path: str, authority: str, headers: list[tuple[str, str]]
        ) -> tuple[int, list[tuple[str, str]], bytes]:
            self.logs.setdefault(pod.ip, []).append(f"Echoing back request made to {path} to client (h2c)")
            body = _echo_body(pod, method, path, authority, "HTTP/2.0", headers)
            return 200, [("content-type", "application/json")], json.dumps(body).encode()

        return respond

    def _tls(self, pod: Pod) -> ssl.SSLContext | None:
        if pod.tls is None:
            return None
        folder = Path(tempfile.mkdtemp(prefix=f"{pod.name}-", dir=self.workdir))
        return server_context(*pod.tls, folder)

    async def stop(self) -> None:
        for server in self._grpc:
            await server.stop()
        for tcp in self._tcp:
            await tcp.stop()
        for server in self._h2c:
            server.close()
            await server.wait_closed()
        for runner in self._runners:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        pod = self.pods.get(sock[0] if sock else "")
        if request.path == "/health":
            return web.Response(text="OK")
        if request.path == "/ws":  # echo-basic's wsHandler: every frame back as it came
            return await _websocket_echo(request)
        if pod is not None:  # echo-basic's log line for every echoed request (RequestURI, RemoteAddr)
            self.logs.setdefault(pod.ip, []).append(
                f"Echoing back request made to {request.raw_path} to client ({request.remote})"
            )
        found = _STATUS.match(request.path)
        if found:
            return web.Response(status=int(found.group(1)))
        delay = request.query.get("delay")
        if delay:
            try:
                await asyncio.sleep(_duration_s(delay))
            except ValueError as exc:
                return web.json_response({"message": str(exc)}, status=500)
        proto = f"HTTP/{request.version.major}.{request.version.minor}"
        body = _echo_body(pod, request.method, request.raw_path, request.host, proto, request.headers.items())
        tls = self._tls_assertions(request)
        if tls is not None:
            body["tls"] = tls
        resp = web.json_response(body, headers={"X-Content-Type-Options": "nosniff"})
        for name, value in _echo_headers(request).items():
            resp.headers[name] = value
        return resp


def _echo_body(
    pod: Pod | None, method: str, path: str, host: str, proto: str, raw: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """echo-basic's RequestAssertions."""
    headers: dict[str, list[str]] = {}
    for name, value in raw:
        headers.setdefault(_canonical(name), []).append(value)
    return {
        "path": path,
        "host": host,
        "method": method,
        "proto": proto,
        "headers": headers,
        "httpPort": str(HTTP_PORT),
        "namespace": pod.namespace if pod else "",
        "ingress": "",
        "service": "",
        "pod": pod.name if pod else "",
    }


async def _websocket_echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws
