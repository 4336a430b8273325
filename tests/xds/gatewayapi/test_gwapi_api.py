"""Gateway API documents through a real control plane (real pipeline and config store): `apply` takes them,
the store keeps metadata.generation (+1 per spec change) and creationTimestamp, and GET
/api/v1/gateway-api/status answers the status Kubernetes would show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from gwapi_helpers import GATEWAY, namespace_doc, reference_grant, selector_gateway

from xds.controlplane.api import start_api
from xds.controlplane.auth import auth_headers
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings

SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.0.1}]
---
"""
ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {value: PATH}}]
    backendRefs: [{name: BACKEND, port: 8080}]
"""


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession

    async def apply(self, text: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/yaml"}
        async with self.session.post(f"{self.url}/api/v1/apply", data=text, headers=headers) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            return body

    async def status(self, query: str = "") -> tuple[int, dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v1/gateway-api/status{query}") as resp:
            return resp.status, await resp.json()


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(api_port=0, xds_port=0, config_dirs=[], state_dir=tmp_path / "state")
    cp = ControlPlane(settings)
    runner, port = await start_api(cp, "127.0.0.1", 0)
    try:
        await cp.start()
        async with aiohttp.ClientSession(headers=auth_headers(tmp_path / "state")) as session:
            yield Api(f"http://127.0.0.1:{port}", session)
    finally:
        await cp.stop()
        await runner.cleanup()


def _item(listing: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return next(i for i in listing["items"] if i["kind"] == kind and i["metadata"]["name"] == name)


async def test_status_endpoint_reflects_applied_documents_and_generations(api: Api) -> None:
    answer = await api.apply(SERVICE + GATEWAY + ROUTE.replace("PATH", "/shop").replace("BACKEND", "shop"))
    assert sorted(answer["changes"]["added"]) == [
        "Gateway default/web",
        "HTTPRoute default/shop",
        "ServiceEntry default/shop",
    ]
    status, listing = await api.status()
    assert status == 200 and listing["kind"] == "List"
    route = _item(listing, "HTTPRoute", "shop")
    assert route["metadata"]["generation"] == 1 and route["metadata"]["creationTimestamp"]
    (parent,) = route["status"]["parents"]
    assert parent["controllerName"] == "mecha.io/gateway-controller" and parent["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "web",
    }
    assert {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in parent["conditions"]} == {
        "Accepted": ("True", "Accepted", 1),
        "ResolvedRefs": ("True", "ResolvedRefs", 1),
    }
    gateway = _item(listing, "Gateway", "web")
    assert gateway["status"]["listeners"][0]["attachedRoutes"] == 1

    # the same document again changes nothing (generation kept); a spec change is generation 2
    assert (await api.apply(ROUTE.replace("PATH", "/shop").replace("BACKEND", "shop")))["changes"][
        "modified"
    ] == []
    await api.apply(ROUTE.replace("PATH", "/store").replace("BACKEND", "gone"))
    _, listing = await api.status("?kind=httproutes&namespace=default")
    assert [i["kind"] for i in listing["items"]] == ["HTTPRoute"]
    route = listing["items"][0]
    assert route["metadata"]["generation"] == 2
    resolved = next(c for c in route["status"]["parents"][0]["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"], resolved["observedGeneration"]) == (
        "False",
        "BackendNotFound",
        2,
    )


async def test_status_filters_and_refuses_unknown_kinds(api: Api) -> None:
    await api.apply(GATEWAY)
    _, listing = await api.status("?kind=Gateway&namespace=elsewhere")
    assert listing["items"] == []
    status, body = await api.status("?kind=UDPRoute")  # not read (TCPRoute is since phase 3)
    assert status == 400 and "kind='udproute'" in body["error"]


ISTIO_GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


async def test_a_gateway_api_gateway_never_replaces_an_istio_gateway_of_the_same_name(api: Api) -> None:
    """The store keys documents by (kind, namespace, name): applying the other API's Gateway of the same
    name is refused instead of silently replacing the stored one."""
    await api.apply(ISTIO_GATEWAY)
    headers = {"Content-Type": "application/yaml"}
    async with api.session.post(f"{api.url}/api/v1/apply", data=GATEWAY, headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 422, body
    (diag,) = body["diagnostics"]
    assert diag["field"] == "apiVersion" and "already exists as networking.istio.io/v1" in diag["message"]
    async with api.session.get(f"{api.url}/api/v1/config") as resp:
        config = await resp.json()
    (stored,) = [d for d in config["documents"] if d["kind"] == "Gateway"]
    assert stored["body"]["apiVersion"] == "networking.istio.io/v1"


CROSS_NAMESPACE = (
    namespace_doc("shop", "{team: shop}")
    + """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: catalog, namespace: backend}
spec:
  hosts: [catalog.backend.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: grpc}]
  endpoints: [{address: 10.0.0.2}]
---
"""
    + selector_gateway("{matchLabels: {team: shop}}")
    + """apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: catalog, namespace: shop}
spec:
  parentRefs: [{name: web, namespace: infra}]
  rules: [{backendRefs: [{name: catalog, namespace: backend, port: 8080}]}]
"""
)
GRANT = reference_grant(
    "backend",
    "{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: shop}",
    "{group: '', kind: Service}",
    name="shop-routes",
)


async def test_namespace_labels_grants_and_grpc_routes_through_the_store(api: Api) -> None:
    """A Namespace's labels admit the route (Selector listener), a ReferenceGrant lets it reach another
    namespace, and deleting the grant revokes that access."""

    async def conditions() -> dict[str, tuple[str, str]]:
        _, listing = await api.status("?kind=grpcroutes")
        (route,) = listing["items"]
        return {c["type"]: (c["status"], c["reason"]) for c in route["status"]["parents"][0]["conditions"]}

    await api.apply(CROSS_NAMESPACE + "---\n" + GRANT)
    assert await conditions() == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    async with api.session.post(
        f"{api.url}/api/v1/delete", data=GRANT, headers={"Content-Type": "application/yaml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
    assert await conditions() == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("False", "RefNotPermitted"),
    }
