"""Upstream GATEWAY-HTTP core tests on filters, parents and rules (httproute-request-header-modifier.go,
-redirect-host-and-status, -invalid-backendref-unknown-kind, -invalid-cross-namespace-parent-ref,
-invalid-parentref-not-matching-section-name, -omitted-backendrefs, -matching-across-routes), ported case by
case."""

from __future__ import annotations

import pytest

from tests.conformance.gatewayapi.suite import (
    INFRA_NS,
    WEB_NS,
    Expected,
    ExpectedRequest,
    Redirect,
    Request,
    Suite,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
V1, V2 = "infra-backend-v1", "infra-backend-v2"
SAME = (INFRA_NS, "same-namespace")


def modified(
    path: str, sent: dict[str, str], seen: dict[str, str] | None, absent: tuple[str, ...] = ()
) -> Expected:
    return Expected(
        Request(path=path, headers=sent),
        ExpectedRequest(path=path, headers=seen, absent_headers=list(absent)),
        backend=V1,
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRouteRequestHeaderModifier")
async def test_HTTPRouteRequestHeaderModifier(suite: Suite) -> None:
    await request_header_modifier(suite, "tests/httproute-request-header-modifier.yaml")


async def request_header_modifier(suite: Suite, manifest: str) -> None:
    """HTTPRouteRequestHeaderModifier.Test, which HTTPRouteBackendRequestHeaderModifier also runs."""
    async with suite.using(manifest):
        route = (INFRA_NS, "request-header-modifier")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        other = {"Some-Other-Header": "val"}
        await suite.expect_all(
            addr,
            [
                modified("/set", other, {**other, "X-Header-Set": "set-overwrites-values"}),
                modified(
                    "/set",
                    {**other, "X-Header-Set": "some-other-value"},
                    {**other, "X-Header-Set": "set-overwrites-values"},
                ),
                modified("/add", other, {**other, "X-Header-Add": "add-appends-values"}),
                modified(
                    "/add",
                    {**other, "X-Header-Add": "some-other-value"},
                    {**other, "X-Header-Add": "some-other-value,add-appends-values"},
                ),
                modified("/remove", {"X-Header-Remove": "val"}, None, ("X-Header-Remove",)),
                modified(
                    "/multiple",
                    {
                        "X-Header-Set-2": "set-val-2",
                        "X-Header-Add-2": "add-val-2",
                        "X-Header-Remove-2": "remove-val-2",
                        "Another-Header": "another-header-val",
                    },
                    {
                        "X-Header-Set-1": "header-set-1",
                        "X-Header-Set-2": "header-set-2",
                        "X-Header-Add-1": "header-add-1",
                        "X-Header-Add-2": "add-val-2,header-add-2",
                        "X-Header-Add-3": "header-add-3",
                        "Another-Header": "another-header-val",
                    },
                    ("X-Header-Remove-1", "X-Header-Remove-2"),
                ),
                modified(
                    "/case-insensitivity",
                    {
                        "x-header-set": "original-val-set",
                        "x-header-add": "original-val-add",
                        "x-header-remove": "original-val-remove",
                        "Another-Header": "another-header-val",
                    },
                    {
                        "X-Header-Set": "header-set",
                        "X-Header-Add": "original-val-add,header-add",
                        "Another-Header": "another-header-val",
                    },
                    ("x-header-remove", "X-Header-Remove"),
                ),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteRedirectHostAndStatus")
async def test_HTTPRouteRedirectHostAndStatus(suite: Suite) -> None:
    async with suite.using("tests/httproute-redirect-host-and-status.yaml"):
        route = (INFRA_NS, "redirect-host-and-status")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        await suite.expect_all(
            addr,
            [
                Expected(
                    Request(path="/hostname-redirect", unfollow_redirect=True),
                    status=(302,),
                    redirect=Redirect(host="example.org"),
                    namespace=INFRA_NS,
                ),
                Expected(
                    Request(path="/host-and-status", unfollow_redirect=True),
                    status=(301,),
                    redirect=Redirect(host="example.org"),
                    namespace=INFRA_NS,
                ),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteInvalidBackendRefUnknownKind")
async def test_HTTPRouteInvalidBackendRefUnknownKind(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-backendref-unknown-kind.yaml"):
        route = (INFRA_NS, "invalid-backend-ref-unknown-kind")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.route_must_have_condition(route, SAME, ("ResolvedRefs", "False", "InvalidKind"))
        await suite.expect(addr, Expected(Request(path="/v2"), status=(500,)))


@pytest.mark.gateway_conformance("HTTPRouteInvalidCrossNamespaceParentRef")
async def test_HTTPRouteInvalidCrossNamespaceParentRef(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-cross-namespace-parent-ref.yaml"):
        route = (WEB_NS, "invalid-cross-namespace-parent-ref")
        await suite.resolved_refs_true(route, SAME)
        await suite.route_must_have_condition(route, SAME, ("Accepted", "False", "NotAllowedByListeners"))
        await suite.route_must_have_no_accepted_parents(route)
        await suite.gateway_must_have_zero_routes(SAME)


@pytest.mark.gateway_conformance("HTTPRouteInvalidParentRefNotMatchingSectionName")
async def test_HTTPRouteInvalidParentRefNotMatchingSectionName(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-parentref-not-matching-section-name.yaml"):
        route = (INFRA_NS, "httproute-listener-not-matching-section-name")
        await suite.route_must_have_condition(route, SAME, ("Accepted", "False", "NoMatchingParent"))
        await suite.route_must_have_no_accepted_parents(route)
        await suite.gateway_must_have_zero_routes(SAME)


@pytest.mark.gateway_conformance("HTTPRouteNoBackendRefs")
async def test_HTTPRouteNoBackendRefs(suite: Suite) -> None:
    async with suite.using("tests/httproute-omitted-backendrefs.yaml"):
        route = (INFRA_NS, "omitted-backendrefs")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
        await suite.resolved_refs_true(route, SAME)
        await suite.expect_all(
            addr,
            [
                Expected(Request(path="/forward"), backend=V1, namespace=INFRA_NS),
                Expected(Request(path="/omitted-no-forward"), status=(500,)),
                Expected(Request(path="/empty-no-forward"), status=(500,)),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteMatchingAcrossRoutes")
async def test_HTTPRouteMatchingAcrossRoutes(suite: Suite) -> None:
    async with suite.using("tests/httproute-matching-across-routes.yaml"):
        r1, r2 = (INFRA_NS, "matching-part1"), (INFRA_NS, "matching-part2")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [r1, r2])
        await suite.resolved_refs_true(r1, SAME)
        await suite.resolved_refs_true(r2, SAME)

        def to(backend: str, host: str, path: str, **headers: str) -> Expected:
            return Expected(
                Request(host=host, path=path, headers=headers), backend=backend, namespace=INFRA_NS
            )

        await suite.expect_all(
            addr,
            [
                to(V1, "example.com", "/"),
                to(V1, "example.com", "/example"),
                to(V1, "example.net", "/example"),
                to(V1, "example.com", "/example", Version="one"),
                to(V2, "example.com", "/v2"),
                to(V1, "example.net", "/v2"),
                to(V2, "example.com", "/v2/example"),
                to(V2, "example.com", "/", Version="two"),
            ],
        )
