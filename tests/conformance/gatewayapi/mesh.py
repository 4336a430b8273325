"""The MESH-HTTP tests' mesh (conformance/mesh/manifests.yaml) without Kubernetes: the echo-advanced pods of
namespaces gateway-conformance-mesh and -mesh-consumer answer on their own loopback address, port 8080 (the
Services' targetPort), with the echo JSON (echo.py); each pod gets a real sidecar Envoy connected to the
suite's `mecha serve` (node metadata: sidecar mode, the pod's namespace and labels). The Go suite execs the
echo image's `client` in a pod (conformance/utils/echo/pod.go): here the request leaves through that pod's
sidecar, whose outbound listener routes it by its Host, as the pod's captured traffic would be.

The comparison is the Go mesh client's (compareRequest), not CompareRoundTrip: status, the request headers
the backend saw (when the test names some), absent headers, response headers and the backend pod's name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conformance.gatewayapi.echo import Pod, _echo_body
from tests.conformance.gatewayapi.suite import (
    REQUEST_TIMEOUT_S,
    ConformanceError,
    Expected,
    ExpectedRequest,
    Suite,
    await_convergence,
)
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

MESH_NS = "gateway-conformance-mesh"  # suite.MeshNamespace
CONSUMER_NS = "gateway-conformance-mesh-consumer"  # suite.MeshConsumerNamespace
MANIFESTS = "mesh/manifests.yaml"
ECHO_PORT = 8080  # echo-advanced's --port, the mesh Services' targetPort
APP_ECHO_V1 = {"app": "echo", "version": "v1"}  # echo.MeshAppEchoV1
APP_ECHO_V2 = {"app": "echo", "version": "v2"}  # echo.MeshAppEchoV2
# The mesh's defaults as Istio installs them, which the suite assumes: traffic to an address no Service has
# (MeshFrontend's pod IP) passes through (meshConfig outboundTrafficPolicy ALLOW_ANY). Mecha's own default is
# REGISTRY_ONLY; a Sidecar of the root namespace is its mesh-wide setting.
MESH_DEFAULTS = "mesh-defaults.yaml"
ALLOW_ANY_SIDECAR: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Sidecar",
    "metadata": {"name": "default", "namespace": "istio-system"},
    "spec": {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}},
}


@dataclass
class Answer:
    """echo.Response as the Go client parses it: the code, the answering pod and what it saw."""

    code: int
    hostname: str = ""
    request_headers: dict[str, list[str]] = field(default_factory=dict)
    response_headers: dict[str, list[str]] = field(default_factory=dict)


def mesh_compare(exp: Expected, got: Answer) -> str:
    """compareRequest: '' when the answer matches, else why not."""
    if got.code not in exp.status:
        return f"wanted status code to be one of {list(exp.status)}, got {got.code}"
    want = exp.expected_request or ExpectedRequest()
    seen = {k.lower(): v for k, v in got.request_headers.items()}
    if want.headers is not None:
        if not got.request_headers:
            return f"no headers captured, expected {len(want.headers)}"
        for name, value in want.headers.items():
            if name.lower() not in seen:
                return f"expected {name} header to be set, actual headers: {seen}"
            if ",".join(seen[name.lower()]) != value:
                return f"expected {name} header to be set to {value}, got {','.join(seen[name.lower()])}"
    for name in want.absent_headers:
        if name.lower() in seen:
            return f"expected {name} header to not be set, got {seen[name.lower()]}"
    for name in exp.response_absent_headers:
        if got.response_headers.get(name.lower()):
            return f"expected no header {name!r}, got {got.response_headers[name.lower()]}"
    for name, value in exp.response_headers.items():
        first = (got.response_headers.get(name.lower()) or [""])[0]  # Header.Get: the first value
        if first != value:
            return f"expected header {name}={value}, got {first}"
    if not got.hostname.startswith(exp.backend):
        return f"expected pod name to start with {exp.backend}, got {got.hostname}"
    return ""


@dataclass
class MeshPod:
    """echo.MeshPod: a pod of the mesh that requests are made *from* (through its sidecar)."""

    name: str
    namespace: str
    address: str
    outbound: int  # its sidecar's outbound listener
    session: aiohttp.ClientSession

    async def request(self, exp: Expected) -> Answer:
        """One request as `client http://HOST/PATH -H k:v` in the pod: HOST is the request's host ("echo"
        by default, CalculateHost: port 80 dropped), a Host header of the test's replaces it."""
        req = exp.request
        host = req.host or "echo"
        if host.endswith(":80"):
            host = host[:-3]
        headers = {"Host": host, **req.headers}
        url = aiohttp.client.URL(f"http://127.0.0.1:{self.outbound}{req.path}", encoded=True)
        async with self.session.request(req.method, url, headers=headers, allow_redirects=False) as resp:
            body = await resp.read()
            answer = Answer(
                resp.status, response_headers={k.lower(): resp.headers.getall(k) for k in resp.headers}
            )
            if resp.content_type == "application/json" and body:
                found: dict[str, Any] = json.loads(body)
                answer.hostname = str(found.get("pod", ""))
                answer.request_headers = dict(found.get("headers") or {})
            return answer

    async def expect(self, exp: Expected) -> None:
        """MakeRequestAndExpectEventuallyConsistentResponse: 3 matching answers in a row within 30 s."""

        async def attempt() -> str:
            try:
                return mesh_compare(exp, await self.request(exp))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return f"request failed: {exc!r}"

        await await_convergence(exp.name(), attempt)

    async def expect_all(self, cases: list[Expected]) -> None:
        """The Go tests' t.Run per case: every case is tried, the test fails naming each failing one."""
        failures = []
        for i, case in enumerate(cases):
            try:
                await self.expect(case)
            except ConformanceError as exc:
                failures.append(f"case {i}: {exc}")
        if failures:
            raise ConformanceError("\n".join(failures))


class Mesh:
    """The mesh manifests applied once (their pods served on port 8080), and one sidecar per mesh pod."""

    def __init__(self, suite: Suite, workdir: Path) -> None:
        self.suite = suite
        self.workdir = workdir
        self.pods: list[Pod] = []
        self.sidecars: dict[str, tuple[EnvoyProcess, int]] = {}  # pod name -> (its Envoy, outbound port)
        self._docs: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    async def start(self) -> None:
        before = {p.name for p in self.suite.kubelet.pods}
        await self.suite.cp.apply(MESH_DEFAULTS, [ALLOW_ANY_SIDECAR])
        self._docs = await self.suite.apply(MANIFESTS)
        self.pods = [p for p in self.suite.kubelet.pods if p.name not in before]
        by_ip = {p.ip: p for p in self.pods}

        async def handle(request: web.Request) -> web.Response:
            sock = request.transport.get_extra_info("sockname") if request.transport else None
            pod = by_ip.get(sock[0] if sock else "")
            proto = f"HTTP/{request.version.major}.{request.version.minor}"
            body = _echo_body(
                pod, request.method, request.raw_path, request.host, proto, request.headers.items()
            )
            return web.json_response(body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for pod in self.pods:
            await web.TCPSite(self._runner, pod.ip, ECHO_PORT).start()
        for pod in self.pods:
            outbound = free_port()
            meta = {"mode": "sidecar", "namespace": pod.namespace, "outbound_port": outbound}
            meta["labels"] = dict(pod.labels)
            proxy_id = f"{pod.name}.{pod.namespace}"
            text, _ = bootstrap_for(proxy_id, self.suite.cp.xds_port, meta, initial_fetch_timeout_s=2.0)
            envoy = EnvoyProcess(text, self.workdir / "sidecars", name=proxy_id, log_level="warning")
            await envoy.start(wait_ready=False)
            self.sidecars[pod.name] = (envoy, outbound)
        for envoy, _ in self.sidecars.values():
            await envoy.wait_ready(60)

    async def stop(self) -> None:
        await self.session.close()
        for envoy, _ in self.sidecars.values():
            await envoy.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._docs:
            await self.suite.cleanup(MANIFESTS, self._docs)
        await self.suite.cp.delete(MESH_DEFAULTS, [ALLOW_ANY_SIDECAR])

    def connect(self, app: dict[str, str], namespace: str = MESH_NS) -> MeshPod:
        """ConnectToAppInNamespace: the first pod of the app (its labels) in the namespace."""
        pod = next(
            p
            for p in self.pods
            if p.namespace == namespace and all(dict(p.labels).get(k) == v for k, v in app.items())
        )
        return MeshPod(pod.name, pod.namespace, pod.ip, self.sidecars[pod.name][1], self.session)
