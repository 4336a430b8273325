"""Gateway API weights through a real gateway Envoy (issue #20): the share of an invalid backendRef answers
500 (the spec: "in proportion to its weight") instead of going to the valid backends, and a 1-in-400 weight
still gets traffic (weights are Envoy's integers, not rounded percentages).

Attacker case: a rule splitting between a local backend and a Service of another namespace with no
ReferenceGrant: that Service never sees a request; its share answers 500."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.testing.envoy import free_port
from xds.testing.gateway import answers_200, gateway_envoy, serve_http, service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
HOST = "shop.example.com"
BACKENDS = {"app": "a", "tiny": "a", "big": "a", "large": "a", "secret": "b"}  # name -> namespace


def config_yaml(ports: dict[str, int]) -> str:
    entries = "".join(service_entry(name, BACKENDS[name], port) for name, port in ports.items())
    return (
        entries
        + """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: a}
spec:
  gatewayClassName: mecha
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: a}
spec:
  parentRefs: [{name: web}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ready}}]
    backendRefs: [{name: app, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: app, port: 8080, weight: 1}, {name: gone, port: 8080, weight: 2}]
  - matches: [{path: {type: PathPrefix, value: /steal}}]
    backendRefs: [{name: app, port: 8080, weight: 1}, {name: secret, namespace: b, port: 8080, weight: 2}]
  - matches: [{path: {type: PathPrefix, value: /tiny}}]
    backendRefs:
    - {name: tiny, port: 8080, weight: 1}
    - {name: big, port: 8080, weight: 199}
    - {name: large, port: 8080, weight: 200}
---
"""
    )


@dataclass
class Rig:
    port: int
    session: aiohttp.ClientSession
    hits: Counter[str] = field(default_factory=Counter)  # backend name -> requests it received

    async def statuses(self, path: str, n: int) -> Counter[int]:
        """n GETs of path, 50 at a time: how many answered each status."""

        async def one() -> int:
            url = f"http://127.0.0.1:{self.port}{path}"
            async with self.session.get(url, headers={"Host": HOST}) as resp:
                await resp.read()
                return resp.status

        out: Counter[int] = Counter()
        for start in range(0, n, 50):
            out.update(await asyncio.gather(*(one() for _ in range(min(50, n - start)))))
        return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    hits: Counter[str] = Counter()
    ports = {name: free_port() for name in BACKENDS}

    def handler(name: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            hits[name] += 1
            return web.Response(text=name)

        return handle

    runners = [await serve_http(port, handler(name)) for name, port in ports.items()]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    try:
        async with gateway_envoy(
            config_yaml(ports),
            "a/web",
            tmp_path_factory.mktemp("gateway-api-weights"),
            ready=lambda gw: answers_200(session, gw.port(), "/ready", HOST),
        ) as gateway:
            yield Rig(gateway.port(), session, hits)
    finally:
        await session.close()
        for runner in runners:
            await runner.cleanup()


async def test_the_share_of_an_invalid_backend_answers_500(rig: Rig) -> None:
    """Weights 1 (valid) and 2 (not found): about 2/3 of the requests get 500, the rest reach the backend."""
    before = rig.hits["app"]
    got = await rig.statuses("/split", 300)
    assert set(got) == {200, 500}, got
    assert 0.55 <= got[500] / 300 <= 0.78, got  # 2/3 expected; +-4 standard deviations
    assert rig.hits["app"] - before == got[200]


async def test_an_unpermitted_backend_share_answers_500_and_it_never_sees_traffic(rig: Rig) -> None:
    got = await rig.statuses("/steal", 150)
    assert set(got) == {200, 500} and 0.5 <= got[500] / 150 <= 0.83, got
    assert rig.hits["secret"] == 0


async def test_a_small_weight_is_not_rounded_away(rig: Rig) -> None:
    """Weights 1, 199 and 200: made whole percentages (0.25, 49.75, 50) the first got 0; as Envoy's
    integers it gets 1/400. 4000 requests: about 10; none at all has odds below 1e-4."""
    got = await rig.statuses("/tiny", 4000)
    assert got == Counter({200: 4000})
    assert 1 <= rig.hits["tiny"] <= 35, rig.hits
    assert rig.hits["tiny"] + rig.hits["big"] + rig.hits["large"] == 4000
