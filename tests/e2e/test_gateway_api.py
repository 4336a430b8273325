"""Kubernetes Gateway API through a real gateway Envoy: a Gateway + HTTPRoute (phase 1 of issue #20) with a
path match, a header match, an 80/20 weighted split, a redirect, a request header modifier and a prefix
rewrite, against small local HTTP backends registered by ServiceEntries. The Envoy is a gateway-mode proxy
whose node metadata names the Gateway (`gateways: [default/web]`), as a Kubernetes deployment of it would."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.gateway import answers_200, gateway_envoy, serve_http, service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
HOST = "shop.example.com"
SPLIT_REQUESTS = 400


def config_yaml(ports: dict[str, int]) -> str:
    entries = "".join(service_entry(name, "default", port, host=name) for name, port in ports.items())
    return (
        entries
        + f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: default}}
spec:
  gatewayClassName: mecha
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: default}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [{HOST}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /catalog}}}}]
    backendRefs: [{{name: catalog, port: 8080}}]
  - matches:
    - path: {{type: PathPrefix, value: /catalog}}
      headers: [{{name: x-canary, value: "yes"}}]
    backendRefs: [{{name: canary, port: 8080}}]
  - matches: [{{path: {{type: Exact, value: /split}}}}]
    backendRefs:
    - {{name: catalog, port: 8080, weight: 80}}
    - {{name: canary, port: 8080, weight: 20}}
  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: new.example.com
        path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}
        statusCode: 301
  - matches: [{{path: {{type: PathPrefix, value: /api/v1}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{{name: x-gateway, value: mecha}}]
        remove: [x-secret]
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}}
    backendRefs: [{{name: catalog, port: 8080}}]
"""
    )


@dataclass
class Rig:
    port: int  # the gateway listener's bound port (Gateway listener port 80)
    envoy: EnvoyProcess
    session: aiohttp.ClientSession
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def get(self, path: str, host: str = HOST, **headers: str) -> tuple[int, dict[str, str], str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with self.session.get(url, headers={"Host": host, **headers}, allow_redirects=False) as resp:
            return resp.status, dict(resp.headers), await resp.text()

    async def backend_of(self, path: str, **headers: str) -> tuple[str, dict[str, Any]]:
        status, _h, text = await self.get(path, **headers)
        assert status == 200, (status, text)
        echo = json.loads(text)
        return echo["backend"], echo


async def _echo_backend(name: str, port: int) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        echo = {
            "backend": name,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        return web.json_response(echo)

    return await serve_http(port, handle)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    backend_ports = {"catalog": free_port(), "canary": free_port()}
    runners = [await _echo_backend(name, port) for name, port in backend_ports.items()]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        async with gateway_envoy(
            config_yaml(backend_ports),
            "default/web",
            tmp_path_factory.mktemp("gateway-api"),
            # until the listener and its routes arrived
            ready=lambda gw: answers_200(session, gw.port(), "/catalog", HOST),
        ) as gateway:
            yield Rig(gateway.port(), gateway.envoy, session)
    finally:
        await session.close()
        for runner in runners:
            await runner.cleanup()


async def test_path_prefix_matches_whole_segments(rig: Rig) -> None:
    assert (await rig.backend_of("/catalog"))[0] == "catalog"
    assert (await rig.backend_of("/catalog/shoes?size=42"))[0] == "catalog"
    status, _h, _t = await rig.get("/catalogue")  # not a segment of /catalog: no rule matches
    assert status == 404


async def test_a_header_match_takes_precedence(rig: Rig) -> None:
    assert (await rig.backend_of("/catalog/shoes", **{"X-Canary": "yes"}))[0] == "canary"
    assert (await rig.backend_of("/catalog/shoes", **{"X-Canary": "no"}))[0] == "catalog"


async def test_an_80_20_split_keeps_its_ratio(rig: Rig) -> None:
    counts: Counter[str] = Counter()
    for _ in range(SPLIT_REQUESTS):
        counts[(await rig.backend_of("/split"))[0]] += 1
    share = counts["catalog"] / SPLIT_REQUESTS
    assert set(counts) == {"catalog", "canary"} and 0.7 <= share <= 0.9, counts


async def test_a_redirect_with_host_path_and_status(rig: Rig) -> None:
    status, headers, _t = await rig.get("/old/items?page=2")
    assert status == 301
    assert headers["Location"] == "http://new.example.com/new/items?page=2"


async def test_request_headers_are_modified_and_the_prefix_rewritten(rig: Rig) -> None:
    backend, echo = await rig.backend_of("/api/v1/orders", **{"X-Secret": "s3cr3t", "X-Gateway": "client"})
    assert backend == "catalog" and echo["path"] == "/v2/orders"
    assert echo["headers"]["x-gateway"] == "mecha" and "x-secret" not in echo["headers"]


async def test_hosts_the_route_does_not_name_get_404(rig: Rig) -> None:
    status, _h, _t = await rig.get("/catalog", host="other.example.com")
    assert status == 404
