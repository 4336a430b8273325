"""Stand-ins for the suite's `echo-basic` pods: one aiohttp app answering on each pod's own loopback address,
with the JSON the suite's roundtripper reads (conformance/echo-basic/echo-basic.go `RequestAssertions`:
path, host, method, proto, headers, httpPort, namespace, ingress, service, pod), the same special paths
(`/status/NNN`, `/health`, the `X-Echo-Set-Header` response headers, `?delay=`) and the same log line per
echoed request (the mirror tests look for it in the mirrored pods' logs)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.conformance.gatewayapi.grpcecho import GrpcEchoServer, PodContext

HTTP_PORT = 3000  # echo-basic's HTTP_PORT default, the targetPort of the suite's Services
_STATUS = re.compile(r"^/status/(\d\d\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    grpc: bool = False  # echo-basic with GRPC_ECHO_SERVER set: the gRPC echo service instead of HTTP


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

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.logs: dict[str, list[str]] = {}  # pod IP -> its stdout lines (the mirror tests read them)
        self._runners: list[web.AppRunner] = []  # one per start (the base pods, then each test's)
        self._grpc: list[GrpcEchoServer] = []

    async def start(self, pods: list[Pod]) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        for pod in pods:
            self.pods[pod.ip] = pod
            if pod.grpc:
                server = GrpcEchoServer(pod.ip, HTTP_PORT, PodContext(pod.namespace, pod.name))
                await server.start()
                self._grpc.append(server)
            else:
                await web.TCPSite(runner, pod.ip, HTTP_PORT).start()

    async def stop(self) -> None:
        for server in self._grpc:
            await server.stop()
        for runner in self._runners:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        pod = self.pods.get(sock[0] if sock else "")
        if request.path == "/health":
            return web.Response(text="OK")
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
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(_canonical(name), []).append(value)
        body: dict[str, Any] = {
            "path": request.raw_path,
            "host": request.host,
            "method": request.method,
            "proto": f"HTTP/{request.version.major}.{request.version.minor}",
            "headers": headers,
            "httpPort": str(HTTP_PORT),
            "namespace": pod.namespace if pod else "",
            "ingress": "",
            "service": "",
            "pod": pod.name if pod else "",
        }
        resp = web.json_response(body, headers={"X-Content-Type-Options": "nosniff"})
        for name, value in _echo_headers(request).items():
            resp.headers[name] = value
        return resp
