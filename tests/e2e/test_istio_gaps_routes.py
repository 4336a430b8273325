"""VirtualService hosts outside the registry (issue #14 item 5) beyond the single route table, through real
Envoys: `uk.bookinfo.com` bound to `mesh` is routed by a proxy whose outbound listener picks route tables by
scope (`--route-tables scoped`, SRDS: a scope `outbound/uk.bookinfo.com` pointing at `outbound|aliases`),
and by a Sidecar egress listener whose hosts list it (its route table `"<port>"`), as istiod adds the host to
the destination port's routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


def mesh_yaml(backend_port: int, service_port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: front, namespace: default}}
spec:
  hosts: [front.default.svc.cluster.local]
  resolution: STATIC
  ports: [{{number: {service_port}, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {backend_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: uk, namespace: default}}
spec:
  hosts: [uk.bookinfo.com]
  http:
  - match: [{{uri: {{prefix: /uk}}}}]
    rewrite: {{uri: /rewritten}}
    route: [{{destination: {{host: front.default.svc.cluster.local}}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: egress-only, namespace: shop}}
spec:
  egress:
  - port: {{number: {service_port}, protocol: HTTP, name: http}}
    hosts: [default/*]
  - hosts: [default/*]
"""


@dataclass
class Rig:
    service_port: int
    outbound: dict[str, int] = field(default_factory=dict)
    envoys: dict[str, EnvoyProcess] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)  # what the backend received
    session: aiohttp.ClientSession | None = None

    async def get(self, port: int, host: str, path: str) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as resp:
            return resp.status, await resp.text()

    async def dump(self, who: str, resource: str) -> list[dict[str, Any]]:
        status, body = await self.envoys[who].admin_get(f"/config_dump?resource={resource}")
        assert status == 200, body
        import json

        return list(json.loads(body)["configs"])


async def _until_ok(rig: Rig, port: int, host: str, who: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if (await rig.get(port, host, "/"))[0] == 200:
                return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, rig.envoys[who].log_tail()
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = Rig(service_port=free_port(), session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))

    async def handle(request: web.Request) -> web.Response:
        r.paths.append(request.path)
        return web.Response(text="front")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend_port).start()
    docs, diags = load_text(mesh_yaml(backend_port, r.service_port), "mesh.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    builders = {"scoped": SnapshotBuilder(route_tables="scoped"), "egress": SnapshotBuilder()}
    namespaces = {"scoped": "default", "egress": "shop"}
    try:
        for name, builder in builders.items():
            r.outbound[name] = free_port()
            meta = {"mode": "sidecar", "namespace": namespaces[name], "outbound_port": r.outbound[name]}
            meta["labels"] = {"app": name}
            proxy = ProxyIdentity.from_node(name, {"mecha": meta})
            cache.set_snapshot(name, builder.build(result.config, [proxy])[name])
            yaml_text, _ = bootstrap_for(name, xds_port, meta, initial_fetch_timeout_s=0.5)
            r.envoys[name] = EnvoyProcess(yaml_text, tmp_path_factory.mktemp(name), name=name)
        for envoy in r.envoys.values():
            await envoy.start(timeout=20)
        await _until_ok(r, r.outbound["scoped"], "front.default.svc.cluster.local", "scoped")
        await _until_ok(r, r.service_port, "front.default.svc.cluster.local", "egress")
        yield r
    finally:
        await r.session.close()  # type: ignore[union-attr]
        for envoy in r.envoys.values():
            await envoy.stop()
        await server.stop(0)
        await runner.cleanup()


async def test_scoped_proxy_routes_a_host_outside_the_registry(rig: Rig) -> None:
    port = rig.outbound["scoped"]
    scopes = [
        s for g in await rig.dump("scoped", "dynamic_scoped_route_configs") for s in g["scoped_route_configs"]
    ]
    by_name = {s["name"]: s["route_configuration_name"] for s in scopes}
    assert by_name["outbound/uk.bookinfo.com"] == "outbound|aliases"
    rig.paths.clear()
    assert await rig.get(port, "uk.bookinfo.com", "/uk/page") == (200, "front")
    assert await rig.get(port, f"uk.bookinfo.com:{rig.service_port}", "/uk") == (200, "front")
    assert rig.paths == ["/rewritten/page", "/rewritten"]  # the VirtualService's routes, not a bypass
    assert (await rig.get(port, "uk.bookinfo.com", "/other"))[0] == 404  # no route of the VS matches


async def test_sidecar_egress_listener_routes_a_host_outside_the_registry(rig: Rig) -> None:
    port = rig.service_port  # the egress listener binds 127.0.0.1:<egress port>
    rig.paths.clear()
    assert await rig.get(port, "uk.bookinfo.com", "/uk/x") == (200, "front")
    assert await rig.get(port, f"uk.bookinfo.com:{port}", "/uk/y") == (200, "front")
    assert rig.paths == ["/rewritten/x", "/rewritten/y"]
