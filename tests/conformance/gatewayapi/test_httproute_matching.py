"""Upstream GATEWAY-HTTP matching tests (httproute-matching.go, -exact-path-matching, -header-matching,
-query-param-matching, -method-matching), ported case by case."""

from __future__ import annotations

import pytest

from tests.conformance.gatewayapi.suite import INFRA_NS, Expected, Request, Suite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
GW = (INFRA_NS, "same-namespace")


def to(backend: str, path: str, method: str = "GET", **headers: str) -> Expected:
    return Expected(Request(path=path, method=method, headers=headers), backend=backend, namespace=INFRA_NS)


def missing(path: str, method: str = "GET", **headers: str) -> Expected:
    return Expected(Request(path=path, method=method, headers=headers), status=(404,))


async def run(suite: Suite, manifest: str, route: str, cases: list[Expected]) -> None:
    async with suite.using(manifest):
        addr = await suite.gateway_and_routes_must_be_accepted(GW, [(INFRA_NS, route)])
        await suite.resolved_refs_true((INFRA_NS, route), GW)
        await suite.expect_all(addr, cases)


@pytest.mark.gateway_conformance("HTTPRouteMatching")
async def test_HTTPRouteMatching(suite: Suite) -> None:
    await run(
        suite,
        "tests/httproute-matching.yaml",
        "matching",
        [
            to(V1, "/"),
            to(V1, "/example"),
            to(V1, "/", Version="one"),
            to(V2, "/v2"),
            to(V2, "/v2/example"),
            to(V2, "/", Version="two"),
            to(V2, "/v2/"),
            to(V1, "/v2example"),
            to(V1, "/foo/v2/example"),
        ],
    )


@pytest.mark.gateway_conformance("HTTPRouteExactPathMatching")
async def test_HTTPRouteExactPathMatching(suite: Suite) -> None:
    await run(
        suite,
        "tests/httproute-exact-path-matching.yaml",
        "exact-matching",
        [
            to(V1, "/one"),
            to(V2, "/two"),
            missing("/"),
            missing("/one/example"),
            missing("/two/"),
            missing("/Two"),
        ],
    )


@pytest.mark.gateway_conformance("HTTPRouteHeaderMatching")
async def test_HTTPRouteHeaderMatching(suite: Suite) -> None:
    await run(
        suite,
        "tests/httproute-header-matching.yaml",
        "header-matching",
        [
            to(V1, "/", Version="one"),
            to(V2, "/", Version="two"),
            to(V1, "/", Version="two", Color="orange"),
            to(V2, "/", Version="two", Color="blue"),
            missing("/", Color="orange"),
            missing("/", **{"Some-Other-Header": "one"}),
            to(V1, "/", Color="blue"),
            to(V1, "/", Color="green"),
            to(V2, "/", Color="red"),
            to(V2, "/", Color="yellow"),
            missing("/", Color="purple"),
        ],
    )


@pytest.mark.gateway_conformance("HTTPRouteQueryParamMatching")
async def test_HTTPRouteQueryParamMatching(suite: Suite) -> None:
    await run(
        suite,
        "tests/httproute-query-param-matching.yaml",
        "query-param-matching",
        [
            to(V1, "/?animal=whale"),
            to(V2, "/?animal=dolphin"),
            to(V3, "/?animal=dolphin&color=blue"),
            to(V3, "/?ANIMAL=Whale"),
            to(V1, "/?animal=whale&otherparam=irrelevant"),
            to(V2, "/?animal=dolphin&color=yellow"),
            missing("/?color=blue"),
            missing("/?animal=dog"),
            missing("/?animal=whaledolphin"),
            missing("/"),
            to(V1, "/path1?animal=whale"),
            to(V2, "/?animal=whale", version="one"),
            to(V3, "/path2?animal=whale", version="two"),
            to(V1, "/path3?animal=shark"),
            to(V1, "/path4?animal=kraken", version="three"),
            missing("/?animal=shark"),
            missing("/path4?animal=kraken"),
            to(V1, "/path5?animal=hydra"),
            to(V3, "/?animal=hydra", version="four"),
        ],
    )


@pytest.mark.gateway_conformance("HTTPRouteMethodMatching")
async def test_HTTPRouteMethodMatching(suite: Suite) -> None:
    await run(
        suite,
        "tests/httproute-method-matching.yaml",
        "method-matching",
        [
            to(V1, "/", "POST"),
            to(V2, "/", "GET"),
            missing("/", "HEAD"),
            to(V1, "/path1", "GET"),
            to(V2, "/", "PUT", version="one"),
            to(V3, "/path2", "POST", version="two"),
            to(V1, "/path3", "PATCH"),
            to(V1, "/path4", "DELETE", version="three"),
            missing("/", "PUT"),
            missing("/path4", "DELETE"),
            to(V1, "/path5", "PATCH"),
            to(V2, "/", "PATCH", version="four"),
        ],
    )
