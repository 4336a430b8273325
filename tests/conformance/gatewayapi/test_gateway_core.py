"""Upstream GATEWAY-HTTP core tests on Gateways and GatewayClasses (gateway-invalid-listeners-
unsupported-protocol.go, gateway-invalid-parameters-ref.go, gateway-invalid-route-kind.go,
gateway-with-attached-routes.go, gatewayclass-observed-generation-bump.go,
gateway-observed-generation-bump.go), ported case by case."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conformance.gatewayapi.harness import manifests
from tests.conformance.gatewayapi.suite import GROUP, INFRA_NS, Suite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
HTTPROUTE_KIND = [(GROUP, "HTTPRoute")]
ANY_ACCEPTED = [("Accepted", "True", ""), ("ResolvedRefs", "True", "")]


def listener(
    name: str, kinds: list[tuple[str, str]], attached: int, conditions: list[tuple[str, str, str]]
) -> dict[str, Any]:
    return {"name": name, "supportedKinds": kinds, "attachedRoutes": attached, "conditions": conditions}


@pytest.mark.gateway_conformance("GatewayListenerUnsupportedProtocol")
async def test_GatewayListenerUnsupportedProtocol(suite: Suite) -> None:
    async with suite.using("tests/gateway-invalid-listeners-unsupported-protocol.yaml"):
        invalid = listener("invalid", [], 0, [("Accepted", "False", "UnsupportedProtocol")])
        # "Gateway with no accepted listeners should not be accepted ..."
        gw = (INFRA_NS, "gateway-only-unsupported-protocols")
        await suite.must_have_latest_conditions("gateways", gw)
        await suite.gateway_must_have_condition(gw, ("Accepted", "False", "ListenersNotValid"))
        await suite.gateway_status_must_have_listeners(gw, [invalid])
        # "Gateway with at least one accepted listeners should be accepted ..."
        gw = (INFRA_NS, "gateway-supported-and-unsupported-protocols")
        await suite.must_have_latest_conditions("gateways", gw)
        await suite.gateway_must_have_condition(gw, ("Accepted", "True", "ListenersNotValid"))
        await suite.gateway_status_must_have_listeners(
            gw, [listener("http", HTTPROUTE_KIND, 0, [("Accepted", "True", "Accepted")]), invalid]
        )


@pytest.mark.gateway_conformance("GatewayInvalidParametersRef")
async def test_GatewayInvalidParametersRef(suite: Suite) -> None:
    async with suite.using("tests/gateway-invalid-parameters-ref.yaml"):
        gw = (INFRA_NS, "gateway-invalid-parameters-ref")
        await suite.must_have_latest_conditions("gateways", gw)
        await suite.gateway_must_have_condition(gw, ("Accepted", "False", "InvalidParameters"))


@pytest.mark.gateway_conformance("GatewayInvalidRouteKind")
async def test_GatewayInvalidRouteKind(suite: Suite) -> None:
    async with suite.using("tests/gateway-invalid-route-kind.yaml"):
        invalid_kinds = [("ResolvedRefs", "False", "InvalidRouteKinds")]
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-only-invalid-route-kind"), [listener("http", [], 0, invalid_kinds)]
        )
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-supported-and-invalid-route-kind"),
            [listener("http", HTTPROUTE_KIND, 0, invalid_kinds)],
        )


@pytest.mark.gateway_conformance("GatewayWithAttachedRoutes")
async def test_GatewayWithAttachedRoutes(suite: Suite) -> None:
    async with suite.using("tests/gateway-with-attached-routes.yaml"):
        # "Gateway listener should have one valid http routes attached"
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-with-one-attached-route"), [listener("http", HTTPROUTE_KIND, 1, ANY_ACCEPTED)]
        )
        # "Gateway listener should have two valid http routes attached"
        gw = (INFRA_NS, "gateway-with-two-attached-routes")
        two = listener("http", HTTPROUTE_KIND, 2, ANY_ACCEPTED)
        await suite.gateway_status_must_have_listeners(gw, [two])
        await suite.route_must_have_condition(
            (INFRA_NS, "http-route-not-accepted"), gw, ("Accepted", "False", "NoMatchingListenerHostname")
        )
        # "Gateway listener should have AttachedRoutes set even when Gateway has unresolved refs"
        gw = (INFRA_NS, "unresolved-gateway-with-one-attached-unresolved-route")
        unresolved = [("Programmed", "False", ""), ("ResolvedRefs", "False", "")]
        await suite.gateway_status_must_have_listeners(gw, [listener("tls", HTTPROUTE_KIND, 1, unresolved)])
        await suite.route_must_have_condition((INFRA_NS, "http-route-4"), gw, ("ResolvedRefs", "False", ""))


@pytest.mark.gateway_conformance("GatewayClassObservedGenerationBump")
async def test_GatewayClassObservedGenerationBump(suite: Suite) -> None:
    relative = "tests/gatewayclass-observed-generation-bump.yaml"
    async with suite.using(relative):
        name = "gatewayclass-observed-generation-bump"
        await suite.gwc_must_be_accepted(name)
        original = await suite.cp.get("gatewayclasses", "", name)
        assert original is not None
        await suite.must_have_latest_conditions("gatewayclasses", ("", name))
        mutate = copy.deepcopy(manifests(relative)[0])
        mutate["spec"]["description"] = "new"
        await suite.patch(relative, mutate)
        await suite.gwc_must_be_accepted(name)
        await suite.must_have_latest_conditions("gatewayclasses", ("", name))
        updated = await suite.cp.get("gatewayclasses", "", name)
        assert updated is not None
        assert original["metadata"]["generation"] != updated["metadata"]["generation"], (
            "generation should change after an update"
        )


@pytest.mark.gateway_conformance("GatewayObservedGenerationBump")
async def test_GatewayObservedGenerationBump(suite: Suite) -> None:
    relative = "tests/gateway-observed-generation-bump.yaml"
    async with suite.using(relative):
        gw = (INFRA_NS, "gateway-observed-generation-bump")
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.must_have_latest_conditions("gateways", gw)
        original = await suite.cp.get("gateways", *gw)
        assert original is not None
        mutate = copy.deepcopy(next(d for d in manifests(relative) if d["kind"] == "Gateway"))
        mutate["spec"]["listeners"].append(
            {
                "name": "alternate",
                "hostname": "foo.com",
                "port": 80,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }
        )
        await suite.patch(relative, mutate)
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.must_have_latest_conditions("gateways", gw)
        updated = await suite.cp.get("gateways", *gw)
        assert updated is not None
        assert original["metadata"]["generation"] != updated["metadata"]["generation"], (
            "generation should change after an update"
        )
