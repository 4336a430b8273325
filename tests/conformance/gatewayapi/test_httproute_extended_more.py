"""More upstream GATEWAY-HTTP extended tests, of features docs/gateway-api.md says Mecha has:
httproute-303-redirect.go, -307-redirect, -308-redirect, -named-rule, -redirect-port-and-scheme,
gateway-with-attached-routes.go's GatewayWithAttachedRoutesWithPort8080 and
httproute-invalid-parentref-not-matching-listener-port.go, ported case by case."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

from tests.conformance.gatewayapi.suite import (
    GROUP,
    H2C_PROTOCOL,
    INFRA_NS,
    REQUEST_TIMEOUT_S,
    ConformanceError,
    Expected,
    GwAddr,
    Redirect,
    Request,
    Suite,
    await_convergence,
)
from tests.conformance.gatewayapi.test_httproute_extended import accepted

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
V1, V2 = "infra-backend-v1", "infra-backend-v2"


def redirect(sent: str, code: int, method: str = "GET", **to: str) -> Expected:
    return Expected(
        Request(path=sent, method=method, unfollow_redirect=True),
        status=(code,),
        redirect=Redirect(**to),
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRoute303Redirect")
async def test_HTTPRoute303Redirect(suite: Suite) -> None:
    async with suite.using("tests/httproute-303-redirect.yaml"):
        addr = await accepted(suite, "303-redirect")
        await suite.expect_all(addr, [redirect("/see-other", 303, "POST", path="/see-other")])


@pytest.mark.gateway_conformance("HTTPRoute307Redirect")
async def test_HTTPRoute307Redirect(suite: Suite) -> None:
    async with suite.using("tests/httproute-307-redirect.yaml"):
        addr = await accepted(suite, "307-redirect")
        await suite.expect_all(addr, [redirect("/temporary", 307, path="/temporary")])


@pytest.mark.gateway_conformance("HTTPRoute308Redirect")
async def test_HTTPRoute308Redirect(suite: Suite) -> None:
    async with suite.using("tests/httproute-308-redirect.yaml"):
        addr = await accepted(suite, "308-redirect")
        await suite.expect_all(addr, [redirect("/permanent", 308, path="/permanent")])


@pytest.mark.gateway_conformance("HTTPRouteNamedRule")
async def test_HTTPRouteNamedRule(suite: Suite) -> None:
    async with suite.using("tests/httproute-named-rule.yaml"):
        addr = await accepted(suite, "http-named-rules")
        # as in Go: no Backend, so any pod of the namespace answers
        await suite.expect_all(
            addr,
            [
                Expected(Request(path="/named"), namespace=INFRA_NS),
                Expected(Request(path="/unnamed"), namespace=INFRA_NS),
            ],
        )


def _http_listener(name: str, attached: int) -> dict[str, object]:
    return {
        "name": name,
        "supportedKinds": [(GROUP, "HTTPRoute")],
        "attachedRoutes": attached,
        "conditions": [("Accepted", "True", ""), ("ResolvedRefs", "True", "")],
    }


@pytest.mark.gateway_conformance("GatewayWithAttachedRoutesWithPort8080")
async def test_GatewayWithAttachedRoutesWithPort8080(suite: Suite) -> None:
    async with suite.using("tests/gateway-with-attached-routes-with-port-8080.yaml"):
        await suite.gateway_status_must_have_listeners(
            (INFRA_NS, "gateway-with-two-listeners-and-one-attached-route"),
            [_http_listener("http-unattached", 0), _http_listener("http", 1)],
        )


@pytest.mark.gateway_conformance("HTTPRouteInvalidParentRefNotMatchingListenerPort")
async def test_HTTPRouteInvalidParentRefNotMatchingListenerPort(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-parentref-not-matching-listener-port.yaml"):
        route = (INFRA_NS, "httproute-listener-not-matching-route-port")
        gw = (INFRA_NS, "same-namespace")
        await suite.resolved_refs_true(route, gw)
        await suite.route_must_have_condition(route, gw, ("Accepted", "False", "NoMatchingParent"))
        await suite.route_must_have_no_accepted_parents(route)
        await suite.gateway_must_have_zero_routes(gw)


def _to(path: str, scheme: str, port: str = "", host: str = "") -> Expected:
    return Expected(
        Request(host=host, path=path, unfollow_redirect=True),
        status=(302,),
        redirect=Redirect(scheme=scheme, host="example.org", port=port),
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRouteRedirectPortAndScheme")
async def test_HTTPRouteRedirectPortAndScheme(suite: Suite) -> None:
    async with suite.using("tests/httproute-redirect-port-and-scheme.yaml"):
        addrs: list[GwAddr] = []
        for gw, route in (
            ("same-namespace", "http-route-for-listener-on-port-80"),
            ("same-namespace-with-http-listener-on-8080", "http-route-for-listener-on-port-8080"),
            ("same-namespace-with-https-listener", "http-route-for-listener-on-port-443"),
        ):
            addrs.append(await suite.gateway_and_routes_must_be_accepted((INFRA_NS, gw), [(INFRA_NS, route)]))
            await suite.resolved_refs_true((INFRA_NS, route), (INFRA_NS, gw))
        cert = suite.credentials.secrets[(INFRA_NS, "tls-validity-checks-certificate")]["tls.crt"]
        assert cert, "missing required server certificate pem for the test"
        failures = []
        await _collect(
            failures,
            "http-listener-on-80",
            [
                suite.expect(addrs[0], c)
                for c in (
                    _to("/scheme-nil-and-port-nil", "http"),
                    _to("/scheme-nil-and-port-80", "http"),
                    _to("/scheme-nil-and-port-8080", "http", "8080"),
                    _to("/scheme-https-and-port-nil", "https"),
                    _to("/scheme-https-and-port-443", "https"),
                    _to("/scheme-https-and-port-8443", "https", "8443"),
                )
            ],
        )
        await _collect(
            failures,
            "http-listener-on-8080",
            [
                suite.expect(addrs[1], c)
                for c in (
                    _to("/scheme-nil-and-port-nil", "http", "8080"),
                    _to("/scheme-nil-and-port-80", "http"),
                    _to("/scheme-https-and-port-nil", "https"),
                )
            ],
        )
        await _collect(
            failures,
            "https-listener-on-443",
            [
                suite.tls_expect(addrs[2], c, cert, "example.org")
                for c in (
                    _to("/scheme-nil-and-port-nil", "https", host="example.org"),
                    _to("/scheme-nil-and-port-443", "https", host="example.org"),
                    _to("/scheme-nil-and-port-8443", "https", "8443", host="example.org"),
                    _to("/scheme-http-and-port-nil", "http", host="example.org"),
                    _to("/scheme-http-and-port-80", "http", host="example.org"),
                    _to("/scheme-http-and-port-8080", "http", "8080", host="example.org"),
                )
            ],
        )
        if failures:
            raise ConformanceError("\n".join(failures))


async def _collect(failures: list[str], group: str, checks: list[Coroutine[Any, Any, None]]) -> None:
    """Go's t.Run per case: every case runs, each failure is named."""
    for i, check in enumerate(checks):
        try:
            await check
        except ConformanceError as exc:
            failures.append(f"{group}/case {i}: {exc}")


@pytest.mark.gateway_conformance("HTTPRouteBackendProtocolWebSocket")
async def test_HTTPRouteBackendProtocolWebSocket(suite: Suite) -> None:
    async with suite.using("tests/httproute-backend-protocol-websocket.yaml"):
        addr = await suite.gateway_and_routes_must_be_accepted(
            (INFRA_NS, "same-namespace"), [(INFRA_NS, "backend-protocol-ws")]
        )
        assert suite.http is not None
        http = suite.http

        async def exchange() -> str:
            # x/net/websocket's handshake: Host is the URL's host as given, Origin the test's
            url = f"http://{addr.dial()}/ws"
            headers = {"Host": str(addr)}
            origin = "ws://gateway/TestConformance/HTTPRouteBackendProtocolWebSocket"
            try:
                async with http.ws_connect(url, headers=headers, origin=origin) as ws:
                    await ws.send_str("Websocket Support!")
                    text = await ws.receive(timeout=REQUEST_TIMEOUT_S)
                    if text.type != aiohttp.WSMsgType.TEXT or text.data != "Websocket Support!":
                        return f"unexpected reply - want: 'Websocket Support!' got: {text.type} {text.data!r}"
                    binary = bytes([1, 2, 3, 4, 5, 6, 7])
                    await ws.send_bytes(binary)
                    got = await ws.receive(timeout=REQUEST_TIMEOUT_S)
                    if got.type != aiohttp.WSMsgType.BINARY or got.data != binary:
                        return f"unexpected reply - want: {binary!r} got: {got.type} {got.data!r}"
                    return ""
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return f"failed to dial: {exc!r}"

        await await_convergence("websocket connection should reach backend", exchange)


@pytest.mark.gateway_conformance("HTTPRouteBackendProtocolH2C")
async def test_HTTPRouteBackendProtocolH2C(suite: Suite) -> None:
    async with suite.using("tests/httproute-backend-protocol-h2c.yaml"):
        addr = await suite.gateway_and_routes_must_be_accepted(
            (INFRA_NS, "same-namespace"), [(INFRA_NS, "backend-protocol-h2c")]
        )
        await suite.expect(
            addr,
            Expected(Request(path="/", protocol=H2C_PROTOCOL), backend=V1, namespace=INFRA_NS),
        )


ISOLATION_PATHS = (
    "/empty-hostname",
    "/wildcard-example-com",
    "/wildcard-foo-example-com",
    "/abc-foo-example-com",
)


def _isolation_cases() -> list[Expected]:
    """Each host reaches only the route of its own listener (the most specific hostname), else 404."""
    served = {
        "bar.com": "/empty-hostname",
        "bar.example.com": "/wildcard-example-com",
        "bar.foo.example.com": "/wildcard-foo-example-com",
        "abc.foo.example.com": "/abc-foo-example-com",
    }
    cases = []
    for host, own in served.items():
        for path in ISOLATION_PATHS:
            if path == own:
                cases.append(Expected(Request(host=host, path=path), backend=V1, namespace=INFRA_NS))
            else:  # Go sets Namespace on one of these 404s: a 404 compares its status only
                cases.append(Expected(Request(host=host, path=path), status=(404,)))
    return cases


@pytest.mark.gateway_conformance("GatewayHTTPListenerIsolation")
async def test_GatewayHTTPListenerIsolation(suite: Suite) -> None:
    async with suite.using(
        "tests/gateway-http-listener-isolation.yaml",
        "tests/gateway-http-listener-isolation-with-hostname-intersection.yaml",
    ):
        await suite.namespaces_must_be_ready([INFRA_NS])
        failures: list[str] = []
        for gw, suffix in (
            ("http-listener-isolation", ""),
            ("http-listener-isolation-with-hostname-intersection", "-with-hostname-intersection"),
        ):
            routes = [
                (INFRA_NS, f"attaches-to-{r}{suffix}") for r in (p.lstrip("/") for p in ISOLATION_PATHS)
            ]
            addr = await suite.gateway_and_routes_must_be_accepted((INFRA_NS, gw), routes)
            for route in routes:
                await suite.resolved_refs_true(route, (INFRA_NS, gw))
            await _collect(failures, gw, [suite.expect(addr, c) for c in _isolation_cases()])
        if failures:
            raise ConformanceError("\n".join(failures))
