"""Per-proxy Istio traffic through real Envoys: locality failover, sourceLabels routing and the Sidecar's
outboundTrafficPolicy (ALLOW_ANY through the dynamic forward proxy, REGISTRY_ONLY = 502).

Two Envoys share one in-process xDS server and one config; they differ only in node metadata: the tester
runs in zone r1/a with labels app=tester (selected by an ALLOW_ANY Sidecar), the plain client in r1/b with
app=plain (the namespace's REGISTRY_ONLY Sidecar).
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


@dataclass
class Backend:
    name: str
    port: int = 0
    failing: bool = False
    hits: int = 0


async def _serve(backend: Backend, runners: list[web.AppRunner]) -> None:
    async def handle(request: web.Request) -> web.Response:
        backend.hits += 1
        return web.Response(status=503 if backend.failing else 200, text=backend.name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend.port).start()
    runners.append(runner)


def mesh_yaml(b: dict[str, Backend]) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zonal}}
spec:
  hosts: [zonal]
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {b["zone-a"].port}}}, locality: r1/a}}
  - {{address: 127.0.0.1, ports: {{http: {b["zone-b"].port}}}, locality: r1/b}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: zonal}}
spec:
  host: zonal
  trafficPolicy:
    outlierDetection:
      {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}
    loadBalancer: {{localityLbSetting: {{enabled: true}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {b["v1"].port}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {b["v2"].port}}}, labels: {{version: v2}}}}
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
  - match: [{{sourceLabels: {{app: tester}}}}]
    route: [{{destination: {{host: web, subset: v2}}}}]
  - route: [{{destination: {{host: web, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: testers}}
spec:
  workloadSelector: {{labels: {{app: tester}}}}
  outboundTrafficPolicy: {{mode: ALLOW_ANY}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""


@dataclass
class Client:
    proxy: ProxyIdentity
    envoy: EnvoyProcess
    outbound: int


@dataclass
class Rig:
    backends: dict[str, Backend]
    clients: dict[str, Client] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    async def get(self, who: str, host: str, path: str = "/") -> tuple[int, str]:
        assert self.session is not None
        url = f"http://127.0.0.1:{self.clients[who].outbound}{path}"
        async with self.session.get(url, headers={"Host": host}) as resp:
            return resp.status, await resp.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    runners: list[web.AppRunner] = []
    backends = {n: Backend(n) for n in ("zone-a", "zone-b", "v1", "v2")}
    for b in backends.values():
        await _serve(b, runners)
    docs, diags = load_text(mesh_yaml(backends), "mesh.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    r = Rig(backends, session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
    try:
        for name, labels, locality in (("tester", "tester", "r1/a"), ("plain", "plain", "r1/b")):
            outbound = free_port()
            meta = {
                "mode": "sidecar",
                "namespace": "default",
                "outbound_port": outbound,
                "labels": {"app": labels},
                "locality": locality,
            }
            proxy = ProxyIdentity.from_node(name, {"mecha": meta})
            yaml_text, _ = bootstrap_for(name, xds_port, meta, initial_fetch_timeout_s=0.5)
            envoy = EnvoyProcess(yaml_text, tmp_path_factory.mktemp(name), name=name)
            r.clients[name] = Client(proxy, envoy, outbound)
        snaps = SnapshotBuilder().build(result.config, [c.proxy for c in r.clients.values()])
        for name, snap in snaps.items():
            cache.set_snapshot(name, snap)
        for c in r.clients.values():
            await c.envoy.start(timeout=20)
        for name in r.clients:  # routes and endpoints arrive after /ready: wait for a real answer
            deadline = time.monotonic() + 15
            while (await r.get(name, "web"))[0] != 200:
                assert time.monotonic() < deadline, r.clients[name].envoy.log_tail()
                await asyncio.sleep(0.1)
        yield r
    finally:
        if r.session is not None:
            await r.session.close()
        for c in r.clients.values():
            await c.envoy.stop()
        await server.stop(0)
        for runner in runners:
            await runner.cleanup()


async def test_source_labels_route_each_client_differently(rig: Rig) -> None:
    for _ in range(5):
        assert await rig.get("tester", "web") == (200, "v2")
        assert await rig.get("plain", "web") == (200, "v1")


async def test_allow_any_forwards_unknown_hosts_registry_only_refuses(rig: Rig) -> None:
    port = rig.backends["v1"].port
    status, body = await rig.get("tester", f"localhost:{port}", "/anything")
    assert (status, body) == (200, "v1")  # not in the registry: resolved and forwarded by Host
    status, _ = await rig.get("plain", f"localhost:{port}", "/anything")
    assert status == 502  # block_all


async def test_locality_failover_after_outlier_ejection(rig: Rig) -> None:
    zone_a, zone_b = rig.backends["zone-a"], rig.backends["zone-b"]
    answers = [await rig.get("tester", "zonal") for _ in range(20)]
    assert answers == [(200, "zone-a")] * 20  # the tester is in r1/a: priority 0 is its own zone
    assert (await rig.get("plain", "zonal")) == (200, "zone-b")  # and the plain client's is r1/b
    zone_a.failing = True
    try:
        deadline = time.monotonic() + 10
        while True:  # the first 503 ejects zone-a (consecutive5xxErrors: 1); the retry may already fail over
            status, body = await rig.get("tester", "zonal")
            if (status, body) == (200, "zone-b"):
                break
            assert time.monotonic() < deadline, (status, body)
        before = zone_a.hits
        answers = [await rig.get("tester", "zonal") for _ in range(20)]
        assert answers == [(200, "zone-b")] * 20
        assert zone_a.hits == before  # ejected: no request reaches it any more
        assert zone_b.hits >= 21
    finally:
        zone_a.failing = False
