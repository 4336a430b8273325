"""GAMMA mesh routes through real sidecar Envoys: three client sidecars (namespaces `mesh`, where the Service
lives, `team-a` and `team-b`) call the Service `echo.mesh` through their outbound listener, with two local
backends (`echo-v1` is also `echo`'s own endpoint, `echo-v2`) registered by ServiceEntries.

- Without routes, `echo` answers from its own endpoint (MeshBasic).
- A producer HTTPRoute in `mesh` (parentRef: Service echo) applies to every client: path matches, a header
  match, a 1:1 weighted split, a response header, a request timeout, and a 404 for what no rule matches.
- A consumer HTTPRoute in `team-a` overrides it for team-a's clients only: team-b and mesh keep the producer
  route (GEP-1294: another namespace cannot change their traffic)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.cache import SnapshotCache
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NAMESPACES = ("mesh", "team-a", "team-b")
ECHO = "echo.mesh.svc.cluster.local"


def _entry(name: str, port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: mesh}}
spec:
  hosts: [{name}.mesh.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
"""


PRODUCER = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-producer, namespace: mesh}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: Exact, value: /v1}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches:
    - path: {type: Exact, value: /v2}
    - path: {type: PathPrefix, value: /any}
      headers: [{name: x-canary, value: "yes"}]
    backendRefs: [{name: echo-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-route, value: producer}]}
    backendRefs: [{name: echo-v1, port: 80, weight: 1}, {name: echo-v2, port: 80, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /any}}]
    backendRefs: [{name: echo-v1, port: 80}]
---
"""
CONSUMER = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-consumer, namespace: team-a}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: mesh}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-route, value: team-a}]}
    backendRefs: [{name: echo-v2, namespace: mesh, port: 80}]
---
"""


@dataclass
class Rig:
    push: Callable[[str], None]
    outbound: dict[str, int]  # namespace -> its sidecar's outbound port
    session: aiohttp.ClientSession

    async def call(self, namespace: str, path: str, **headers: str) -> tuple[int, str, dict[str, str]]:
        """(status, answering backend or "", response headers) of one request through the sidecar."""
        url = f"http://127.0.0.1:{self.outbound[namespace]}{path}"
        async with self.session.get(url, headers={"Host": ECHO, **headers}) as resp:
            body = await resp.text()
            backend = json.loads(body)["backend"] if resp.status == 200 else ""
            return resp.status, backend, {k.lower(): v for k, v in resp.headers.items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    for name in ("echo-v1", "echo-v2"):

        async def answer(request: web.Request, name: str = name) -> web.Response:
            if request.path.startswith("/slow"):
                await asyncio.sleep(2)
            return web.json_response({"backend": name, "path": request.path})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        ports[name] = free_port()
        await web.TCPSite(runner, "127.0.0.1", ports[name]).start()
        runners.append(runner)
    services = _entry("echo", ports["echo-v1"]) + "".join(_entry(n, p) for n, p in ports.items())
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    builder = SnapshotBuilder()
    proxies: dict[str, ProxyIdentity] = {}
    envoys: list[EnvoyProcess] = []
    outbound: dict[str, int] = {}
    for ns in NAMESPACES:
        outbound[ns] = free_port()
        meta = {"mode": "sidecar", "namespace": ns, "outbound_port": outbound[ns]}
        proxies[ns] = ProxyIdentity.from_node(f"client.{ns}", {"mecha": meta})
        yaml_text, _ = bootstrap_for(f"client.{ns}", xds_port, meta, initial_fetch_timeout_s=0.5)
        envoys.append(EnvoyProcess(yaml_text, tmp_path_factory.mktemp(f"gamma-{ns}"), name=f"client.{ns}"))

    def push(routes: str) -> None:
        docs, diags = load_text(services + routes, "mesh.yaml")
        result = compile_documents(docs)
        assert not diags and result.config is not None, [str(d) for d in result.errors]
        built = builder.build(result.config, list(proxies.values()))
        for who in proxies.values():
            cache.set_snapshot(who.id, built[who.id])

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        push("")
        await asyncio.gather(*(e.start(timeout=30) for e in envoys))
        yield Rig(push, outbound, session)
    finally:
        await session.close()
        for envoy in envoys:
            await envoy.stop()
        await server.stop(0)
        for runner in runners:
            await runner.cleanup()


async def until(
    rig: Rig, namespace: str, path: str, check: Callable[[tuple[int, str, dict[str, str]]], bool]
) -> Any:
    """The answer once check holds (xDS pushes land a moment after the snapshot is set)."""
    deadline = time.monotonic() + 15
    while True:
        got = await rig.call(namespace, path)
        if check(got):
            return got
        assert time.monotonic() < deadline, (namespace, path, got)
        await asyncio.sleep(0.1)


async def test_without_routes_the_service_answers_from_its_own_endpoint(rig: Rig) -> None:
    rig.push("")
    for ns in NAMESPACES:
        status, backend, _ = await until(rig, ns, "/v2", lambda g: g[0] == 200)
        assert (status, backend) == (200, "echo-v1")


async def test_a_producer_route_applies_to_clients_of_every_namespace(rig: Rig) -> None:
    rig.push(PRODUCER)
    for ns in NAMESPACES:
        await until(rig, ns, "/v2", lambda g: g[1] == "echo-v2")
        assert (await rig.call(ns, "/v1"))[:2] == (200, "echo-v1")
        assert (await rig.call(ns, "/any/thing", **{"x-canary": "yes"}))[:2] == (200, "echo-v2")
        assert (await rig.call(ns, "/any/thing"))[:2] == (200, "echo-v1")
        # GAMMA: with routes attached, a request no route matches is rejected
        assert (await rig.call(ns, "/elsewhere"))[0] == 404
    seen: Counter[str] = Counter()
    for _ in range(40):
        status, backend, headers = await rig.call("team-b", "/split")
        assert status == 200 and headers.get("x-route") == "producer"
        seen[backend] += 1
    assert set(seen) == {"echo-v1", "echo-v2"} and min(seen.values()) >= 5, seen
    started = time.monotonic()
    status, _, _ = await rig.call("team-b", "/slow")
    assert status == 504 and time.monotonic() - started < 1.5  # the route's 300ms, not the backend's 2s


async def test_a_consumer_route_changes_only_its_own_namespace_s_traffic(rig: Rig) -> None:
    rig.push(PRODUCER + CONSUMER)
    status, _, headers = await until(rig, "team-a", "/v1", lambda g: g[1] == "echo-v2")
    assert (status, headers.get("x-route")) == (200, "team-a")
    assert (await rig.call("team-a", "/elsewhere"))[:2] == (200, "echo-v2")  # its own rules only
    for ns in ("mesh", "team-b"):  # the producer route, untouched by team-a's
        assert (await rig.call(ns, "/v1"))[:2] == (200, "echo-v1")
        _, _, headers = await rig.call(ns, "/split")
        assert headers.get("x-route") == "producer"
        assert (await rig.call(ns, "/elsewhere"))[0] == 404


async def test_a_consumer_route_alone_leaves_other_namespaces_on_the_default_route(rig: Rig) -> None:
    rig.push(CONSUMER)
    await until(rig, "team-b", "/elsewhere", lambda g: g[0] == 200)
    for ns in ("mesh", "team-b"):
        status, backend, headers = await rig.call(ns, "/v2")
        assert (status, backend, headers.get("x-route")) == (200, "echo-v1", None)
    assert (await until(rig, "team-a", "/v2", lambda g: g[1] == "echo-v2"))[2].get("x-route") == "team-a"
