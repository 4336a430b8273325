"""Upstream GATEWAY-HTTP core tests with HTTPS listeners (httproute-https-listener.go, gateway-secret-*.go,
gateway-invalid-tls-configuration.go, gateway-modify-listeners.go), ported case by case, with the
certificate Secrets the Go suite generates at start-up (certs.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conformance.gatewayapi.harness import manifests
from tests.conformance.gatewayapi.suite import GROUP, INFRA_NS, Expected, Request, Suite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
HTTPROUTE_KIND = [(GROUP, "HTTPRoute")]
ANY_ACCEPTED = [("Accepted", "True", ""), ("ResolvedRefs", "True", "")]
PROGRAMMED = [("Programmed", "True", "Programmed"), ("ResolvedRefs", "True", "")]


def https(conditions: list[tuple[str, str, str]], attached: int = 0, name: str = "https") -> dict[str, Any]:
    return {
        "name": name,
        "supportedKinds": HTTPROUTE_KIND,
        "attachedRoutes": attached,
        "conditions": conditions,
    }


@pytest.mark.gateway_conformance("HTTPRouteHTTPSListener")
async def test_HTTPRouteHTTPSListener(suite: Suite) -> None:
    async with suite.using("tests/httproute-https-listener.yaml"):
        gw = (INFRA_NS, "same-namespace-with-https-listener")
        route, no_host = (INFRA_NS, "httproute-https-test"), (INFRA_NS, "httproute-https-test-no-hostname")
        addr = await suite.gateway_and_routes_must_be_accepted(gw, [route, no_host])
        await suite.resolved_refs_true(route, gw)
        await suite.resolved_refs_true(no_host, gw)
        cert = suite.credentials.secrets[(INFRA_NS, "tls-validity-checks-certificate")]["tls.crt"]
        assert cert, "missing required server certificate pem for the test"
        for host, code, backend in (
            ("example.org", 200, "infra-backend-v1"),
            ("unknown-example.org", 404, ""),
            ("second-example.org", 200, "infra-backend-v2"),
        ):
            expected = Expected(
                Request(host=host, path="/"), status=(code,), backend=backend, namespace=INFRA_NS
            )
            await suite.tls_expect(addr, expected, cert, host)


@pytest.mark.gateway_conformance("GatewaySecretInvalidReferenceGrant")
async def test_GatewaySecretInvalidReferenceGrant(suite: Suite) -> None:
    async with suite.using("tests/gateway-secret-invalid-reference-grant.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-secret-invalid-reference-grant"),
            [https([("ResolvedRefs", "False", "RefNotPermitted")])],
        )


@pytest.mark.gateway_conformance("GatewaySecretMissingReferenceGrant")
async def test_GatewaySecretMissingReferenceGrant(suite: Suite) -> None:
    async with suite.using("tests/gateway-secret-missing-reference-grant.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-secret-missing-reference-grant"),
            [https([("ResolvedRefs", "False", "RefNotPermitted")])],
        )


@pytest.mark.gateway_conformance("GatewaySecretReferenceGrantAllInNamespace")
async def test_GatewaySecretReferenceGrantAllInNamespace(suite: Suite) -> None:
    async with suite.using("tests/gateway-secret-reference-grant-all-in-namespace.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-secret-reference-grant-all-in-namespace"), [https(PROGRAMMED)]
        )


@pytest.mark.gateway_conformance("GatewaySecretReferenceGrantSpecific")
async def test_GatewaySecretReferenceGrantSpecific(suite: Suite) -> None:
    async with suite.using("tests/gateway-secret-reference-grant-specific.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-secret-reference-grant-specific"), [https(PROGRAMMED)]
        )


@pytest.mark.gateway_conformance("GatewayInvalidTLSConfiguration")
async def test_GatewayInvalidTLSConfiguration(suite: Suite) -> None:
    async with suite.using("tests/gateway-invalid-tls-configuration.yaml"):
        listeners = [https([("ResolvedRefs", "False", "InvalidCertificateRef")])]
        for name in (
            "gateway-certificate-nonexistent-secret",
            "gateway-certificate-unsupported-group",
            "gateway-certificate-unsupported-kind",
            "gateway-certificate-malformed-secret",
        ):
            await suite.gateway_status_must_have_listeners((INFRA_NS, name), listeners)


@pytest.mark.gateway_conformance("GatewayModifyListeners")
async def test_GatewayModifyListeners(suite: Suite) -> None:
    relative = "tests/gateway-modify-listeners.yaml"
    async with suite.using(relative):
        docs = manifests(relative)

        def gateway(name: str) -> dict[str, Any]:
            return copy.deepcopy(
                next(d for d in docs if d["kind"] == "Gateway" and d["metadata"]["name"] == name)
            )

        # "should be able to add a listener that then becomes available for routing traffic"
        gw = (INFRA_NS, "gateway-add-listener")
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.must_have_latest_conditions("gateways", gw)
        original = await suite.cp.get("gateways", *gw)
        assert original is not None
        mutate = gateway(gw[1])
        mutate["spec"]["listeners"].append(
            {
                "name": "http",
                "port": 80,
                "protocol": "HTTP",
                "hostname": "data.test.com",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }
        )
        await suite.patch(relative, mutate)
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.gateway_status_must_have_listeners(
            gw, [https(ANY_ACCEPTED, 1), https(ANY_ACCEPTED, 1, name="http")]
        )
        await suite.must_have_latest_conditions("gateways", gw)
        updated = await suite.cp.get("gateways", *gw)
        assert updated is not None
        assert original["metadata"]["generation"] != updated["metadata"]["generation"]

        # "should be able to remove listeners, which would then stop routing the relevant traffic"
        gw = (INFRA_NS, "gateway-remove-listener")
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.must_have_latest_conditions("gateways", gw)
        original = await suite.cp.get("gateways", *gw)
        assert original is not None
        mutate = gateway(gw[1])
        assert len(mutate["spec"]["listeners"]) == 2, "the gateway must have 2 listeners"
        mutate["spec"]["listeners"] = [ls for ls in mutate["spec"]["listeners"] if ls["name"] == "http"]
        await suite.patch(relative, mutate)
        await suite.namespaces_must_be_ready([INFRA_NS])
        await suite.gateway_status_must_have_listeners(gw, [https(ANY_ACCEPTED, 1, name="http")])
        await suite.must_have_latest_conditions("gateways", gw)
        updated = await suite.cp.get("gateways", *gw)
        assert updated is not None
        assert original["metadata"]["generation"] != updated["metadata"]["generation"]
