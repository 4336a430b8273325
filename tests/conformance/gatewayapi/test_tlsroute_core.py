"""Upstream GATEWAY-TLS core tests (tlsroute-*.go), ported case by case: TLS passthrough to the suite's
tcp-backend and tls-backend pods through real gateway Envoys, with the CA-signed certificates the Go suite
generates at start-up, and the TLSRoute status the spec defines."""

from __future__ import annotations

import pytest

from tests.conformance.gatewayapi.suite import (
    GROUP,
    INFRA_NS,
    Expected,
    Request,
    Suite,
    TcpExpected,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
CA = (INFRA_NS, "tls-checks-ca-certificate")


def accepted_false(reason: str) -> tuple[str, str, str]:
    return ("Accepted", "False", reason)


@pytest.mark.gateway_conformance("TLSRouteSimpleSameNamespace")
async def test_TLSRouteSimpleSameNamespace(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-simple-same-namespace.yaml"):
        route, gw = (INFRA_NS, "gateway-conformance-infra-test"), (INFRA_NS, "gateway-tlsroute")
        await suite.namespaces_must_be_ready([INFRA_NS])
        addr, hostnames = await suite.gateway_and_tls_routes_must_be_accepted(gw, [route])
        assert len(hostnames) == 1, (
            f"unexpected error in test configuration, found {len(hostnames)} hostnames"
        )
        ca = suite.config_maps[CA]["ca.crt"]
        await suite.tcp_expect(
            addr,
            ca,
            hostnames[0],
            True,
            TcpExpected(
                backend_is_tls=True, backend="tcp-backend", namespace=INFRA_NS, hostname=hostnames[0]
            ),
        )


@pytest.mark.gateway_conformance("TLSRouteHostnameIntersection")
async def test_TLSRouteHostnameIntersection(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-hostname-intersection.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        cert = suite.credentials.secrets[(INFRA_NS, "tls-checks-certificate")]["tls.crt"]
        assert cert, "missing required server certificate pem for the test"

        def to(host: str, backend: str) -> Expected:
            return Expected(Request(host=host, path="/"), backend=backend, namespace=INFRA_NS)

        for gw_name, routes, both, rejected in (
            (
                "gw-tlsroute-exact-hostname-x-1",
                ["tlsroute-more-specific-wc-hostname-x-1"],
                False,
                "non.matching.com",
            ),
            (
                "gw-tlsroute-more-specific-wc-hostname-x-2",
                ["tlsroute-exact-hostname-x-2", "tlsroute-less-specific-wc-hostname-x-2"],
                True,
                "non.matching.com",
            ),
            (
                "gw-tlsroute-less-specific-wc-hostname-x-3",
                ["tlsroute-exact-hostname-x-3", "tlsroute-more-specific-wc-hostname-x-3"],
                True,
                "non.matching.com",
            ),
            (
                "gw-tlsroute-empty-hostname-x-4",
                ["tlsroute-exact-hostname-x-4", "tlsroute-less-specific-wc-hostname-x-4"],
                True,
                "non.matching.org",
            ),
        ):
            gw = (INFRA_NS, gw_name)
            names = [(INFRA_NS, r) for r in routes]
            addr, _ = await suite.gateway_and_tls_routes_must_be_accepted(gw, names)
            for route in names:
                await suite.route_must_have_condition(
                    route, gw, ("ResolvedRefs", "True", "ResolvedRefs"), "tlsroutes"
                )
            await suite.tls_expect(addr, to("abc.example.com", "tls-backend"), cert, "abc.example.com")
            if both:
                await suite.tls_expect(
                    addr, to("other.example.com", "tls-backend-2"), cert, "other.example.com"
                )
            await suite.tls_connection_rejected(addr, rejected)


@pytest.mark.gateway_conformance("TLSRouteInvalidBackendRefNonexistent")
async def test_TLSRouteInvalidBackendRefNonexistent(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-invalid-backendref-nonexistent.yaml"):
        route = (INFRA_NS, "invalid-backend-ref-nonexistent")
        gw = (INFRA_NS, "gateway-tlsroute-invalid-backend-ref-nonexistent")
        await suite.namespaces_must_be_ready([INFRA_NS])
        addr, hostnames = await suite.gateway_and_tls_routes_must_be_accepted(gw, [route])
        await suite.route_must_have_condition(
            route, gw, ("ResolvedRefs", "False", "BackendNotFound"), "tlsroutes"
        )
        await suite.tls_connection_rejected(addr, hostnames[0])


@pytest.mark.gateway_conformance("TLSRouteInvalidBackendRefUnknownKind")
async def test_TLSRouteInvalidBackendRefUnknownKind(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-invalid-backendref-unknown-kind.yaml"):
        route = (INFRA_NS, "invalid-backend-ref-unknown-kind")
        gw = (INFRA_NS, "gateway-tlsroute-invalid-backend-ref-unknown-kind")
        await suite.namespaces_must_be_ready([INFRA_NS])
        addr, hostnames = await suite.gateway_and_tls_routes_must_be_accepted(gw, [route])
        await suite.route_must_have_condition(
            route, gw, ("ResolvedRefs", "False", "InvalidKind"), "tlsroutes"
        )
        await suite.tls_connection_rejected(addr, hostnames[0])


@pytest.mark.gateway_conformance("TLSRouteInvalidNoMatchingListenerHostname")
async def test_TLSRouteInvalidNoMatchingListenerHostname(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-invalid-no-matching-listener-hostname.yaml"):
        r1, r2 = (INFRA_NS, "tlsroute-hostname-mismatch-1"), (INFRA_NS, "tlsroute-hostname-mismatch-2")
        exact, wildcard = (
            (INFRA_NS, "gateway-tls-exact-hostname"),
            (INFRA_NS, "gateway-tls-wildcard-hostname"),
        )
        await suite.namespaces_must_be_ready([INFRA_NS])
        cond = accepted_false("NoMatchingListenerHostname")
        await suite.route_must_have_condition(r1, exact, cond, "tlsroutes")
        await suite.route_must_have_condition(r2, wildcard, cond, "tlsroutes")
        await suite.route_must_have_no_accepted_parents(r1, "tlsroutes")
        await suite.route_must_have_no_accepted_parents(r2, "tlsroutes")
        await suite.gateway_must_have_zero_routes(exact)
        await suite.gateway_must_have_zero_routes(wildcard)


@pytest.mark.gateway_conformance("TLSRouteInvalidNoMatchingListener")
async def test_TLSRouteInvalidNoMatchingListener(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-invalid-no-matching-listener.yaml"):
        http_route = (INFRA_NS, "tlsroute-not-allowed-protocol-http")
        https_route = (INFRA_NS, "tlsroute-not-allowed-protocol-https")
        section_route = (INFRA_NS, "tlsroute-no-matching-section-name")
        passthrough_gw = (INFRA_NS, "gateway-tlsroute-tls-passthrough-only")
        http_gw, https_gw = (
            (INFRA_NS, "gateway-tlsroute-http-only"),
            (INFRA_NS, "gateway-tlsroute-https-only"),
        )
        await suite.namespaces_must_be_ready([INFRA_NS])
        not_allowed = accepted_false("NotAllowedByListeners")
        await suite.route_must_have_condition(http_route, http_gw, not_allowed, "tlsroutes")
        await suite.route_must_have_condition(https_route, https_gw, not_allowed, "tlsroutes")
        await suite.route_must_have_condition(
            section_route, passthrough_gw, accepted_false("NoMatchingParent"), "tlsroutes"
        )
        for route in (http_route, https_route, section_route):
            await suite.route_must_have_no_accepted_parents(route, "tlsroutes")
        await suite.gateway_must_have_zero_routes(http_gw)
        await suite.gateway_must_have_zero_routes(https_gw)


@pytest.mark.gateway_conformance("TLSRouteInvalidReferenceGrant")
async def test_TLSRouteInvalidReferenceGrant(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-invalid-reference-grant.yaml"):
        route = (INFRA_NS, "gateway-conformance-infra-test")
        gw = (INFRA_NS, "gateway-tlsroute-referencegrant")
        await suite.gateway_and_tls_routes_must_be_accepted(gw, [route])
        await suite.route_must_have_condition(
            route, gw, ("ResolvedRefs", "False", "RefNotPermitted"), "tlsroutes"
        )


@pytest.mark.gateway_conformance("TLSRouteListenerPassthroughSupportedKinds")
async def test_TLSRouteListenerPassthroughSupportedKinds(suite: Suite) -> None:
    async with suite.using("tests/tlsroute-listener-passthrough-supported-kinds.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-tlsroute-passthrough-supported-kind"),
            [
                {
                    "name": "tls-passthrough",
                    "supportedKinds": [(GROUP, "TLSRoute")],
                    "attachedRoutes": 0,
                    "conditions": [("ResolvedRefs", "False", "InvalidRouteKinds")],
                }
            ],
        )


@pytest.mark.gateway_conformance("TLSRouteListenerTerminateNotSupported")
async def test_TLSRouteListenerTerminateNotSupported(suite: Suite) -> None:
    # runs because Mecha does not claim TLSRouteModeTerminate (the Go test returns early for those who do)
    async with suite.using("tests/tlsroute-listener-terminate-not-supported.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-tlsroute-terminate-unsupported"),
            [
                {
                    "name": "tls-terminate",
                    "supportedKinds": [],
                    "attachedRoutes": 0,
                    "conditions": [("Accepted", "False", "UnsupportedValue")],
                }
            ],
        )
