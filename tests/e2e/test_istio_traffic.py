"""Istio's traffic surface through a real Envoy: fault delay/abort, mirroring, redirect, direct response,
header rewriting, CORS preflight, a TCP route, and Sidecar egress scoping shrinking what the proxy holds.

One Envoy and one in-process xDS server per module (cheaper than a full `mecha serve` stack, and the
proxy needs node metadata the demo layout does not have: `tcp_ports`). Backends record what they saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds import types
from xds.cache import SnapshotCache
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PROXY_ID = "istio-client"
DELAY = 0.6
TIMER_SLACK = 0.02  # Envoy's timers have millisecond granularity and start before our clock does
ABORT_REQUESTS = 200
ABORT_TOLERANCE = 0.12  # 50% +- 12 points over 200 requests: ~3.4 standard deviations


@dataclass
class Backend:
    name: str
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)


async def _http_backend(backend: Backend, runners: list[web.AppRunner]) -> None:
    async def handle(request: web.Request) -> web.Response:
        record = {"path": request.path_qs, "method": request.method, "headers": dict(request.headers)}
        backend.seen.append(record)
        return web.json_response({"backend": backend.name, **record})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend.port).start()
    runners.append(runner)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(1024)
    writer.write(b"echo:" + data)
    await writer.drain()
    writer.close()


def mesh_yaml(b: dict[str, Backend], echo_port: int, extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{{number: 9080, name: http}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {b["v1"].port}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {b["v2"].port}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shadow}}
spec:
  hosts: [shadow]
  resolution: STATIC
  ports: [{{number: 9080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {b["shadow"].port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo]
  addresses: [127.0.0.50]
  resolution: STATIC
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {echo_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: elsewhere, namespace: other}}
spec:
  hosts: [a.other.svc.cluster.local, b.other.svc.cluster.local, c.other.svc.cluster.local]
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {b["shadow"].port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - match: [{{uri: {{prefix: /delay}}}}]
    fault: {{delay: {{fixedDelay: 0.6s, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: web, subset: v1}}}}]
  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 50}}}}}}
    route: [{{destination: {{host: web, subset: v1}}}}]
  - match: [{{uri: {{prefix: /mirror}}}}]
    mirror: {{host: shadow}}
    route: [{{destination: {{host: web, subset: v1}}}}]
  - match: [{{uri: {{exact: /old}}}}]
    redirect: {{uri: /new, authority: new.example.com, redirectCode: 302}}
  - match: [{{uri: {{exact: /teapot}}}}]
    directResponse: {{status: 418, body: {{string: "short and stout"}}}}
  - match: [{{uri: {{prefix: /headers}}}}]
    headers:
      request: {{set: {{x-team: blue}}, remove: [x-secret]}}
      response: {{add: {{x-served-by: mecha}}}}
    route:
    - destination: {{host: web, subset: v2}}
      headers: {{request: {{add: {{x-subset: v2}}}}}}
  - corsPolicy:
      allowOrigins: [{{exact: "https://app.example.com"}}]
      allowMethods: [GET, PUT]
      allowHeaders: [x-custom]
      maxAge: 60s
    route: [{{destination: {{host: web, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: [echo]
  tcp:
  - match: [{{port: 9000}}]
    route: [{{destination: {{host: echo, port: {{number: 9000}}}}}}]
{extra}"""


SIDECAR = """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["./*"]
"""


class Rig:
    def __init__(
        self, cache: SnapshotCache, proxy: ProxyIdentity, envoy: EnvoyProcess, outbound: int
    ) -> None:
        self.cache, self.proxy, self.envoy, self.outbound = cache, proxy, envoy, outbound
        self.builder = SnapshotBuilder()
        self.backends: dict[str, Backend] = {}
        self.echo_port = 0
        self.tcp_port = 0
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    def push(self, text: str) -> Any:
        docs, diags = load_text(text, "mesh.yaml")
        result = compile_documents(docs)
        assert not diags and result.config is not None, [str(d) for d in result.errors]
        snap = self.builder.build(result.config, [self.proxy])[self.proxy.id]
        self.cache.set_snapshot(self.proxy.id, snap)
        return snap

    async def get(self, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], str]:
        hdrs = {"Host": "web", **headers}
        url = f"http://127.0.0.1:{self.outbound}{path}"
        async with self.session.request(method, url, headers=hdrs, allow_redirects=False) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.text()

    async def config_dump_clusters(self) -> set[str]:
        _, body = await self.envoy.admin_get("/config_dump?resource=dynamic_active_clusters")
        return {c["cluster"]["name"] for c in json.loads(body).get("configs", [])}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    runners: list[web.AppRunner] = []
    backends = {n: Backend(n) for n in ("v1", "v2", "shadow")}
    for b in backends.values():
        await _http_backend(b, runners)
    echo_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo_server.sockets[0].getsockname()[1]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    outbound, tcp_port = free_port(), free_port()
    meta = {
        "mode": "sidecar",
        "namespace": "default",
        "outbound_port": outbound,
        "tcp_ports": {"9000": tcp_port},
    }
    proxy = ProxyIdentity.from_node(PROXY_ID, {"mecha": meta})
    yaml_text, _ = bootstrap_for(PROXY_ID, xds_port, meta, initial_fetch_timeout_s=0.5)
    envoy = EnvoyProcess(yaml_text, tmp_path_factory.mktemp("istio-envoy"), name="istio-client")
    r = Rig(cache, proxy, envoy, outbound)
    r.backends, r.echo_port, r.tcp_port = backends, echo_port, tcp_port
    try:
        r.push(mesh_yaml(backends, echo_port))
        await envoy.start(timeout=20)
        deadline = time.monotonic() + 15
        while True:
            try:
                if (await r.get("/ready-check"))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, envoy.log_tail()
            await asyncio.sleep(0.1)
        yield r
    finally:
        await r.session.close()
        await envoy.stop()
        await server.stop(0)
        echo_server.close()
        await echo_server.wait_closed()
        for runner in runners:
            await runner.cleanup()


async def test_fault_delay_holds_the_request_at_least_the_delay(rig: Rig) -> None:
    started = time.monotonic()
    status, _, body = await rig.get("/delay")
    elapsed = time.monotonic() - started
    assert status == 200 and json.loads(body)["backend"] == "v1"
    assert elapsed >= DELAY - TIMER_SLACK, elapsed
    started = time.monotonic()
    assert (await rig.get("/plain"))[0] == 200
    assert time.monotonic() - started < DELAY  # the delay is the fault's, not the path's


async def test_fault_abort_ratio_within_tolerance(rig: Rig) -> None:
    sem = asyncio.Semaphore(16)

    async def one() -> int:
        async with sem:
            return (await rig.get("/abort"))[0]

    statuses = await asyncio.gather(*(one() for _ in range(ABORT_REQUESTS)))
    assert set(statuses) <= {200, 418}
    share = statuses.count(418) / ABORT_REQUESTS
    assert abs(share - 0.5) <= ABORT_TOLERANCE, share


async def test_mirrored_copy_reaches_the_shadow(rig: Rig) -> None:
    before = len(rig.backends["shadow"].seen)
    status, _, body = await rig.get("/mirror/one?x=1")
    assert status == 200 and json.loads(body)["backend"] == "v1"
    deadline = time.monotonic() + 5
    while len(rig.backends["shadow"].seen) == before:
        assert time.monotonic() < deadline, "the mirrored copy never arrived"
        await asyncio.sleep(0.05)
    copy = rig.backends["shadow"].seen[-1]
    assert copy["path"] == "/mirror/one?x=1"
    assert copy["headers"]["Host"].startswith("web-shadow")  # Envoy marks shadowed requests this way


async def test_redirect_and_direct_response(rig: Rig) -> None:
    status, headers, _ = await rig.get("/old")
    assert status == 302 and headers["location"] == "http://new.example.com/new"
    status, _, body = await rig.get("/teapot")
    assert status == 418 and body == "short and stout"


async def test_request_and_response_headers_rewritten(rig: Rig) -> None:
    status, headers, body = await rig.get("/headers", **{"x-secret": "s3cret", "x-team": "red"})
    seen = json.loads(body)
    assert status == 200 and seen["backend"] == "v2"
    assert seen["headers"]["x-team"] == "blue"  # set overwrote the client's value
    assert seen["headers"]["x-subset"] == "v2"  # per-destination header
    assert "x-secret" not in seen["headers"]
    assert headers["x-served-by"] == "mecha"


async def test_cors_preflight_answered_by_envoy(rig: Rig) -> None:
    before = len(rig.backends["v1"].seen)
    status, headers, _ = await rig.get(
        "/anything",
        method="OPTIONS",
        Origin="https://app.example.com",
        **{"Access-Control-Request-Method": "PUT"},
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-methods"] == "GET,PUT"
    assert headers["access-control-max-age"] == "60"
    assert len(rig.backends["v1"].seen) == before  # the preflight never reached the app


async def test_tcp_route_carries_bytes(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.tcp_port)
    writer.write(b"ping")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(1024), 5)
    writer.close()
    assert answer == b"echo:ping"
    _, body = await rig.envoy.admin_get("/config_dump?resource=dynamic_listeners")
    assert "127.0.0.50_9000" in body  # istiod's <VIP>_<port> listener name


async def test_sidecar_egress_scoping_shrinks_the_proxy(rig: Rig) -> None:
    full = rig.push(mesh_yaml(rig.backends, rig.echo_port))
    full_names = set(full.of(types.CLUSTER))
    assert "outbound|8080||a.other.svc.cluster.local" in full_names
    scoped = rig.push(mesh_yaml(rig.backends, rig.echo_port, SIDECAR))
    scoped_names = set(scoped.of(types.CLUSTER))
    assert len(scoped_names) == len(full_names) - 3
    assert not any(n.endswith("other.svc.cluster.local") for n in scoped_names)
    deadline = time.monotonic() + 10
    while await rig.config_dump_clusters() != scoped_names:
        assert time.monotonic() < deadline, (await rig.config_dump_clusters()) ^ scoped_names
        await asyncio.sleep(0.1)
    status, _, _ = await rig.get("/delay")
    assert status == 200  # in-scope traffic still flows
    rig.push(mesh_yaml(rig.backends, rig.echo_port))  # restore for any later test


async def test_refused_change_keeps_the_running_config(rig: Rig, tmp_path: Path) -> None:
    bad = mesh_yaml(rig.backends, rig.echo_port).replace("fixedDelay: 0.6s", "fixedDelay: soon")
    docs, _ = load_text(bad, "bad.yaml")
    result = compile_documents(docs)
    assert result.config is None  # refused: nothing is pushed
    (err,) = result.errors
    assert err.location.file == "bad.yaml" and err.location.name == "web"
    assert err.field == "spec.http[0].fault.delay.fixedDelay"
    started = time.monotonic()
    assert (await rig.get("/delay"))[0] == 200 and time.monotonic() - started >= DELAY - TIMER_SLACK
