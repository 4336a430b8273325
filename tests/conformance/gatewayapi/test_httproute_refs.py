"""Upstream GATEWAY-HTTP core tests on hostnames, namespaces and references (httproute-hostname-
intersection.go, -listener-hostname-matching, -cross-namespace, -reference-grant, -invalid-*), ported case
by case."""

from __future__ import annotations

import pytest

from tests.conformance.gatewayapi.harness import manifests
from tests.conformance.gatewayapi.suite import GROUP, INFRA_NS, WEB_NS, Expected, Request, Suite

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
SAME = (INFRA_NS, "same-namespace")
ACCEPTED_LISTENER = [("Accepted", "True", ""), ("ResolvedRefs", "True", "")]
HTTPROUTE_KIND = [(GROUP, "HTTPRoute")]


def to(backend: str, host: str, path: str = "/", ns: str = INFRA_NS) -> Expected:
    return Expected(Request(host=host, path=path), backend=backend, namespace=ns)


def status(code: int, host: str = "", path: str = "/", ns: str = "") -> Expected:
    return Expected(Request(host=host, path=path), status=(code,), namespace=ns)


@pytest.mark.gateway_conformance("HTTPRouteHostnameIntersection")
async def test_HTTPRouteHostnameIntersection(suite: Suite) -> None:
    async with suite.using("tests/httproute-hostname-intersection.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        gw = (INFRA_NS, "httproute-hostname-intersection")
        routes = [
            (INFRA_NS, n)
            for n in (
                "specific-host-matches-listener-specific-host",
                "specific-host-matches-listener-wildcard-host",
                "wildcard-host-matches-listener-specific-host",
                "wildcard-host-matches-listener-wildcard-host",
            )
        ]
        # "HTTPRoutes that do intersect with listener hostnames"
        addr = await suite.gateway_and_routes_must_be_accepted(gw, routes)
        for route in routes:
            await suite.resolved_refs_true(route, gw)
        await suite.expect_all(
            addr,
            [
                to(V1, "very.specific.com", "/s1"),
                to(V1, "very.specific.com:1234", "/s1"),
                status(404, "non.matching.com", "/s1"),
                status(404, "foo.nonmatchingwildcard.io", "/s1"),
                status(404, "foo.wildcard.io", "/s1"),
                status(404, "very.specific.com", "/non-matching-prefix"),
                to(V2, "foo.wildcard.io", "/s2"),
                to(V2, "bar.wildcard.io", "/s2"),
                to(V2, "foo.bar.wildcard.io", "/s2"),
                status(404, "non.matching.com", "/s2"),
                status(404, "wildcard.io", "/s2"),
                status(404, "very.specific.com", "/s2"),
                status(404, "foo.wildcard.io", "/non-matching-prefix"),
                to(V3, "very.specific.com", "/s3"),
                status(404, "non.matching.com", "/s3"),
                status(404, "foo.specific.com", "/s3"),
                status(404, "foo.wildcard.io", "/s3"),
                status(404, "very.specific.com", "/non-matching-prefix"),
                to(V1, "foo.anotherwildcard.io", "/s4"),
                to(V1, "bar.anotherwildcard.io", "/s4"),
                to(V1, "foo.bar.anotherwildcard.io", "/s4"),
                status(404, "anotherwildcard.io", "/s4"),
                status(404, "foo.wildcard.io", "/s4"),
                status(404, "very.specific.com", "/s4"),
                status(404, "foo.anotherwildcard.io", "/non-matching-prefix"),
            ],
        )
        # "HTTPRoutes that do not intersect with listener hostnames"
        addr = await suite.gateway_and_routes_must_be_accepted(gw, [])
        parents = [
            {
                "parentRef": {"group": GROUP, "kind": "Gateway", "name": gw[1], "namespace": gw[0]},
                "controllerName": "mecha.io/gateway-controller",
                "conditions": [("Accepted", "False", "NoMatchingListenerHostname")],
            }
        ]
        await suite.route_must_have_parents("httproutes", (INFRA_NS, "no-intersecting-hosts"), parents, True)
        await suite.expect_all(
            addr, [status(404, "specific.but.wrong.com", "/s5"), status(404, "wildcard.io", "/s5")]
        )
        # "Gateway listeners should have correct attached routes"
        await suite.gateway_status_must_have_listeners(
            gw,
            [
                {
                    "name": "listener-1",
                    "supportedKinds": HTTPROUTE_KIND,
                    "conditions": ACCEPTED_LISTENER,
                    "attachedRoutes": 2,
                },
                {
                    "name": "listener-2",
                    "supportedKinds": HTTPROUTE_KIND,
                    "conditions": ACCEPTED_LISTENER,
                    "attachedRoutes": 1,
                },
                {
                    "name": "listener-3",
                    "supportedKinds": HTTPROUTE_KIND,
                    "conditions": ACCEPTED_LISTENER,
                    "attachedRoutes": 1,
                },
            ],
        )
        # "HTTPRoute with multiple hostnames and a Gateway with multiple listeners"
        gw_all = (INFRA_NS, "httproute-hostname-intersection-all")
        route_all = (INFRA_NS, "httproute-hostname-intersection-all")
        addr = await suite.gateway_and_routes_must_be_accepted(gw_all, [route_all])
        await suite.resolved_refs_true(route_all, gw_all)
        await suite.expect_all(
            addr,
            [
                to(V2, "first.com"),
                to(V2, "sub.first.com"),
                to(V2, "second.com"),
                to(V2, "sub.second.com"),
                status(404, "third.com", ns=INFRA_NS),
                status(404, "sub.third.com", ns=INFRA_NS),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteListenerHostnameMatching")
async def test_HTTPRouteListenerHostnameMatching(suite: Suite) -> None:
    async with suite.using("tests/httproute-listener-hostname-matching.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        gw = (INFRA_NS, "httproute-listener-hostname-matching")
        r1, r2, r3 = ((INFRA_NS, f"backend-v{i}") for i in (1, 2, 3))
        await suite.gateway_and_routes_must_be_accepted(gw, [r1], listeners=("listener-1",))
        await suite.resolved_refs_true(r1, gw)
        await suite.gateway_and_routes_must_be_accepted(gw, [r2], listeners=("listener-2",))
        await suite.resolved_refs_true(r2, gw)
        addr = await suite.gateway_and_routes_must_be_accepted(
            gw, [r3], listeners=("listener-3", "listener-4")
        )
        await suite.resolved_refs_true(r3, gw)
        await suite.expect_all(
            addr,
            [
                to(V1, "bar.com"),
                to(V2, "foo.bar.com"),
                to(V3, "baz.bar.com"),
                to(V3, "boo.bar.com"),
                to(V3, "multiple.prefixes.bar.com"),
                to(V3, "multiple.prefixes.foo.com"),
                status(404, "foo.com"),
                status(404, "no.matching.host"),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteCrossNamespace")
async def test_HTTPRouteCrossNamespace(suite: Suite) -> None:
    async with suite.using("tests/httproute-cross-namespace.yaml"):
        route, gw = (WEB_NS, "cross-namespace"), (INFRA_NS, "backend-namespaces")
        addr = await suite.gateway_and_routes_must_be_accepted(gw, [route])
        await suite.resolved_refs_true(route, gw)
        await suite.expect(addr, to("web-backend", "", ns=WEB_NS))


@pytest.mark.gateway_conformance("HTTPRouteReferenceGrant")
async def test_HTTPRouteReferenceGrant(suite: Suite) -> None:
    manifest = "tests/httproute-reference-grant.yaml"
    async with suite.using(manifest):
        route = (INFRA_NS, "reference-grant")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        await suite.expect(addr, to("web-backend", "", ns=WEB_NS))
        grant = [
            d
            for d in manifests(manifest)
            if d["kind"] == "ReferenceGrant"
            and d["metadata"] == {"name": "reference-grant", "namespace": WEB_NS}
        ]
        assert len(grant) == 1
        await suite.cp.delete(manifest, grant)
        await suite.expect(addr, status(500))


@pytest.mark.gateway_conformance("HTTPRouteInvalidReferenceGrant")
async def test_HTTPRouteInvalidReferenceGrant(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-reference-grant.yaml"):
        route = (INFRA_NS, "reference-grant")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.route_must_have_condition(route, SAME, ("ResolvedRefs", "False", "RefNotPermitted"))
        await suite.expect(addr, Expected(Request(), status=(500,), backend="web-backend", namespace=WEB_NS))


@pytest.mark.gateway_conformance("HTTPRouteInvalidCrossNamespaceBackendRef")
async def test_HTTPRouteInvalidCrossNamespaceBackendRef(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-cross-namespace-backend-ref.yaml"):
        route = (INFRA_NS, "invalid-cross-namespace-backend-ref")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.route_must_have_condition(route, SAME, ("ResolvedRefs", "False", "RefNotPermitted"))
        await suite.expect(addr, status(500))


@pytest.mark.gateway_conformance("HTTPRouteInvalidNonExistentBackendRef")
async def test_HTTPRouteInvalidNonExistentBackendRef(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-nonexistent-backendref.yaml"):
        route = (INFRA_NS, "invalid-nonexistent-backend-ref")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.route_must_have_condition(route, SAME, ("ResolvedRefs", "False", "BackendNotFound"))
        await suite.expect(addr, status(500))
