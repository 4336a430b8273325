"""GATEWAY-HTTP core tests of the upstream suite (conformance/tests/httproute-*.go), ported one to one: each
test is named after its upstream ShortName and asserts what the Go test asserts, through real gateway
Envoys."""

from __future__ import annotations

import pytest

from tests.conformance.gatewayapi.suite import INFRA_NS, Expected, Request, Suite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]
BACKEND_V1 = "infra-backend-v1"


@pytest.mark.gateway_conformance("HTTPRouteSimpleSameNamespace")
async def test_HTTPRouteSimpleSameNamespace(suite: Suite) -> None:
    async with suite.using("tests/httproute-simple-same-namespace.yaml"):
        route, gw = (INFRA_NS, "gateway-conformance-infra-test"), (INFRA_NS, "same-namespace")
        addr = await suite.gateway_and_routes_must_be_accepted(gw, [route])
        await suite.resolved_refs_true(route, gw)
        await suite.expect(addr, Expected(Request(path="/"), backend=BACKEND_V1, namespace=INFRA_NS))
