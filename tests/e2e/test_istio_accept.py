"""Istio migration round two through real Envoys (issue #14 items 2, 3, 5): what istiod accepts is served as
istiod serves it. A route to a host or subset that does not exist yet answers 503; a VirtualService whose
sourceLabels exclude a client leaves that client the default route (not 404); a VirtualService host that is
no registry service is routed.

Two Envoys (app=tester, app=plain) share one in-process xDS server and one config.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

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

BACKENDS = ("front", "web")


@dataclass
class Backend:
    name: str
    port: int = 0
    hits: int = 0


async def _serve(backend: Backend, runners: list[web.AppRunner]) -> None:
    async def handle(request: web.Request) -> web.Response:
        backend.hits += 1
        return web.Response(text=backend.name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend.port).start()
    runners.append(runner)


def _service(name: str, *ports: int) -> str:
    endpoints = "\n".join(f"  - {{address: 127.0.0.1, ports: {{http: {p}}}}}" for p in ports)
    return f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}]
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints:
{endpoints}
"""


def mesh_yaml(b: dict[str, Backend]) -> str:
    return (
        _service("front", b["front"].port)
        + _service("web", b["web"].port)
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front]
  http:
  - match: [{uri: {prefix: /missing-host}}]
    route: [{destination: {host: not-yet}}]
  - match: [{uri: {prefix: /missing-subset}}]
    route: [{destination: {host: front, subset: v9}}]
  - route: [{destination: {host: front}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: testers-only}
spec:
  hosts: [web]
  http:
  - match: [{sourceLabels: {app: tester}}]
    route: [{destination: {host: front}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: uk}
spec:
  hosts: [uk.bookinfo.com]
  http: [{route: [{destination: {host: front}}]}]
"""
    )


@dataclass
class Rig:
    backends: dict[str, Backend]
    outbound: dict[str, int] = field(default_factory=dict)
    envoys: list[EnvoyProcess] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    async def get(self, who: str, host: str, path: str = "/") -> tuple[int, str]:
        assert self.session is not None
        url = f"http://127.0.0.1:{self.outbound[who]}{path}"
        async with self.session.get(url, headers={"Host": host}) as resp:
            return resp.status, await resp.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    runners: list[web.AppRunner] = []
    backends = {n: Backend(n) for n in BACKENDS}
    for b in backends.values():
        await _serve(b, runners)
    docs, diags = load_text(mesh_yaml(backends), "mesh.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    r = Rig(backends, session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
    proxies: list[ProxyIdentity] = []
    try:
        for name in ("tester", "plain"):
            r.outbound[name] = free_port()
            meta = {
                "mode": "sidecar",
                "namespace": "default",
                "outbound_port": r.outbound[name],
                "labels": {"app": name},
            }
            proxies.append(ProxyIdentity.from_node(name, {"mecha": meta}))
            yaml_text, _ = bootstrap_for(name, xds_port, meta, initial_fetch_timeout_s=0.5)
            r.envoys.append(EnvoyProcess(yaml_text, tmp_path_factory.mktemp(name), name=name))
        for name, snap in SnapshotBuilder().build(result.config, proxies).items():
            cache.set_snapshot(name, snap)
        for envoy in r.envoys:
            await envoy.start(timeout=20)
        for name in r.outbound:  # routes and endpoints arrive after /ready: wait for a real answer
            deadline = time.monotonic() + 15
            while (await r.get(name, "front"))[0] != 200:
                assert time.monotonic() < deadline, r.envoys[0].log_tail()
                await asyncio.sleep(0.1)
        yield r
    finally:
        if r.session is not None:
            await r.session.close()
        for envoy in r.envoys:
            await envoy.stop()
        await server.stop(0)
        for runner in runners:
            await runner.cleanup()


async def test_routes_to_a_missing_host_or_subset_answer_503_the_rest_is_served(rig: Rig) -> None:
    assert await rig.get("plain", "front", "/page") == (200, "front")
    assert (await rig.get("plain", "front", "/missing-host"))[0] == 503
    assert (await rig.get("plain", "front", "/missing-subset"))[0] == 503


async def test_source_labels_excluding_the_client_leave_the_default_route(rig: Rig) -> None:
    assert await rig.get("tester", "web") == (200, "front")  # its VirtualService route
    assert await rig.get("plain", "web") == (200, "web")  # excluded: the host's default route, not 404


async def test_virtual_service_host_outside_the_registry_is_routed(rig: Rig) -> None:
    assert await rig.get("plain", "uk.bookinfo.com") == (200, "front")
    assert await rig.get("plain", "uk.bookinfo.com:8080") == (200, "front")
