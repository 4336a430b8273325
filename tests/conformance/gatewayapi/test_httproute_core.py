"""GATEWAY-HTTP core tests of the upstream suite (conformance/tests/httproute-*.go), ported one to one: each
test is named after its upstream ShortName and asserts what the Go test asserts, through real gateway
Envoys."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from tests.conformance.gatewayapi.harness import manifests
from tests.conformance.gatewayapi.suite import (
    APP_NS,
    INFRA_NS,
    ConformanceError,
    Expected,
    Request,
    Suite,
    compare,
)
from tests.conformance.gatewayapi.weight import MAX_TEST_RETRIES, add_random_entropy, weighted_distribution

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]
BACKEND_V1, BACKEND_V2, BACKEND_V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
SAME = (INFRA_NS, "same-namespace")


@pytest.mark.gateway_conformance("HTTPRouteSimpleSameNamespace")
async def test_HTTPRouteSimpleSameNamespace(suite: Suite) -> None:
    async with suite.using("tests/httproute-simple-same-namespace.yaml"):
        route, gw = (INFRA_NS, "gateway-conformance-infra-test"), (INFRA_NS, "same-namespace")
        addr = await suite.gateway_and_routes_must_be_accepted(gw, [route])
        await suite.resolved_refs_true(route, gw)
        await suite.expect(addr, Expected(Request(path="/"), backend=BACKEND_V1, namespace=INFRA_NS))


@pytest.mark.gateway_conformance("HTTPRouteObservedGenerationBump")
async def test_HTTPRouteObservedGenerationBump(suite: Suite) -> None:
    relative = "tests/httproute-observed-generation-bump.yaml"
    async with suite.using(relative):
        route, gw = (INFRA_NS, "observed-generation-bump"), SAME
        await suite.namespaces_must_be_ready([INFRA_NS])
        original = await suite.cp.get("httproutes", *route)
        assert original is not None
        await suite.must_have_latest_conditions("httproutes", route)
        mutate = copy.deepcopy(next(d for d in manifests(relative) if d["kind"] == "HTTPRoute"))
        mutate["spec"]["rules"][0]["backendRefs"][0]["name"] = BACKEND_V2
        await suite.patch(relative, mutate)
        await suite.route_must_have_condition(route, gw, ("Accepted", "True", ""))
        await suite.resolved_refs_true(route, gw)
        await suite.must_have_latest_conditions("httproutes", route)
        updated = await suite.cp.get("httproutes", *route)
        assert updated is not None
        assert original["metadata"]["generation"] != updated["metadata"]["generation"], (
            "generation should change after an update"
        )


@pytest.mark.gateway_conformance("HTTPRouteMultipleGateways")
async def test_HTTPRouteMultipleGateways(suite: Suite) -> None:
    async with suite.using("tests/httproute-multiple-gateways.yaml"):
        shared = (INFRA_NS, "multiple-gateways-shared-route")
        for gw, dedicated, backend in (
            (SAME, "same-namespace-dedicated-route", BACKEND_V2),
            ((INFRA_NS, "all-namespaces"), "all-namespaces-dedicated-route", BACKEND_V3),
        ):
            addr = await suite.gateway_and_routes_must_be_accepted(gw, [shared, (INFRA_NS, dedicated)])
            await suite.expect_all(
                addr,
                [
                    Expected(Request(path="/shared"), backend=BACKEND_V1, namespace=INFRA_NS),
                    Expected(Request(path="/"), backend=backend, namespace=INFRA_NS),
                ],
            )


@pytest.mark.gateway_conformance("HTTPRoutePartiallyInvalidViaInvalidReferenceGrant")
async def test_HTTPRoutePartiallyInvalidViaInvalidReferenceGrant(suite: Suite) -> None:
    async with suite.using("tests/httproute-partially-invalid-via-invalid-reference-grant.yaml"):
        route = (INFRA_NS, "invalid-reference-grant")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.route_must_have_condition(route, SAME, ("ResolvedRefs", "False", "RefNotPermitted"))
        await suite.expect(addr, Expected(Request(path="/v2"), status=(500,)))
        await suite.expect(addr, Expected(Request(path="/"), backend="app-backend-v1", namespace=APP_NS))


@pytest.mark.gateway_conformance("HTTPRoutePathMatchOrder")
async def test_HTTPRoutePathMatchOrder(suite: Suite) -> None:
    async with suite.using("tests/httproute-path-match-order.yaml"):
        route = (INFRA_NS, "path-matching-order")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        await suite.expect_all(
            addr,
            [
                Expected(Request(path=path), backend=backend, namespace=INFRA_NS)
                for path, backend in (
                    ("/match/exact/one", BACKEND_V3),
                    ("/match/exact", BACKEND_V2),
                    ("/match", BACKEND_V1),
                    ("/match/prefix/one/any", BACKEND_V2),
                    ("/match/prefix/any", BACKEND_V1),
                    ("/match/any", BACKEND_V3),
                )
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteServiceTypes")
async def test_HTTPRouteServiceTypes(suite: Suite) -> None:
    relative = "tests/httproute-service-types.yaml"
    async with suite.using(relative):
        route = (INFRA_NS, "service-types")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        pods = [
            p
            for p in suite.kubelet.pods
            if p.namespace == INFRA_NS and dict(p.labels).get("app") == BACKEND_V1
        ]
        assert pods, "Expected 'infra-backend-v1' to have running Pods"
        # setupEndpointSlices: the manual slices get the pods of their address family
        slices = {d["metadata"]["name"]: d for d in manifests(relative) if d["kind"] == "EndpointSlice"}
        for prefix in ("manual-endpointslices", "headless-manual-endpointslices"):
            for family, is_member in (("ip4", _is4), ("ip6", _is6)):
                patched = copy.deepcopy(slices[f"{prefix}-{family}"])
                patched["endpoints"] = [
                    {
                        "addresses": [p.ip],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "nodeName": "",
                        "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
                    }
                    for p in pods
                    if is_member(p.ip)
                ]
                if patched["endpoints"]:
                    await suite.patch(relative, patched)
        await suite.expect_all(
            addr,
            [
                Expected(Request(path="/" + path), backend=BACKEND_V1, namespace=INFRA_NS)
                for path in ("manual-endpointslices", "headless-manual-endpointslices", "headless")
            ],
        )


def _is4(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 4


def _is6(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 6


@pytest.mark.gateway_conformance("HTTPRouteWeight")
async def test_HTTPRouteWeight(suite: Suite) -> None:
    async with suite.using("tests/httproute-weight.yaml"):
        route = (INFRA_NS, "weighted-backends")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        expected = Expected(Request(path="/"), namespace=INFRA_NS)
        await suite.expect(addr, expected)

        async def send() -> str:
            unique = copy.deepcopy(expected)
            jitter = add_random_entropy()
            unique.request.headers = {"X-Jitter": jitter} if jitter is not None else {}
            got = await suite.round_trip(addr, unique)
            why = compare(unique, got)
            if why:
                raise ConformanceError(f"response expectation failed for request: {why}")
            return str((got.request or {}).get("pod", ""))

        errors = []
        for i in range(MAX_TEST_RETRIES):
            why = await weighted_distribution(send, {BACKEND_V1: 0.7, BACKEND_V2: 0.3, BACKEND_V3: 0.0})
            if not why:
                return
            errors.append(f"Traffic distribution test failed ({i + 1}/{MAX_TEST_RETRIES}): {why}")
        raise ConformanceError("Weighted distribution tests failed:\n" + "\n".join(errors))
