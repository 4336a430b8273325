"""Upstream GATEWAY-HTTP extended tests of the features Mecha claims (httproute-redirect-path.go, -redirect-
port, -redirect-scheme, -rewrite-host, -rewrite-path, -response-header-modifier, -request-mirror,
-request-multiple-mirrors, -timeout-request, -timeout-backend-request, -request-header-modifier (backend),
-request-header-modifier-backend-weights, -listener-port-matching,
-invalid-parentref-section-name-not-matching-port), ported case by case."""

from __future__ import annotations

import asyncio
import math
import re
import uuid

import pytest

from tests.conformance.gatewayapi.suite import (
    INFRA_NS,
    ConformanceError,
    Expected,
    ExpectedRequest,
    GwAddr,
    Redirect,
    Request,
    Suite,
    add_request_id_query_param,
)
from tests.conformance.gatewayapi.test_httproute_filters import request_header_modifier

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
V1, V2, V3 = "infra-backend-v1", "infra-backend-v2", "infra-backend-v3"
SAME = (INFRA_NS, "same-namespace")
MODIFY_SENT = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"}
MODIFY_SEEN = {
    "X-Header-Add": "header-val-1",
    "X-Header-Add-Append": "append-val-1,header-val-2",
    "X-Header-Set": "set-overwrites-values",
}


async def accepted(suite: Suite, name: str) -> GwAddr:
    """GatewayAndHTTPRoutesMustBeAccepted + HTTPRouteMustHaveResolvedRefsConditionsTrue on same-namespace."""
    route = (INFRA_NS, name)
    addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route])
    await suite.resolved_refs_true(route, SAME)
    return addr


def redirect(sent: str, code: int = 302, **to: str) -> Expected:
    return Expected(
        Request(path=sent, unfollow_redirect=True),
        status=(code,),
        redirect=Redirect(**to),
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRouteRedirectPath")
async def test_HTTPRouteRedirectPath(suite: Suite) -> None:
    async with suite.using("tests/httproute-redirect-path.yaml"):
        addr = await accepted(suite, "redirect-path")
        await suite.expect_all(
            addr,
            [
                redirect("/original-prefix/lemon", path="/replacement-prefix/lemon"),
                redirect("/full/path/original", path="/full-path-replacement"),
                redirect("/path-and-host", host="example.org", path="/replacement-prefix"),
                redirect("/path-and-status", 301, path="/replacement-prefix"),
                redirect("/full-path-and-host", host="example.org", path="/replacement-full"),
                redirect("/full-path-and-status", 301, path="/replacement-full"),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteRedirectPort")
async def test_HTTPRouteRedirectPort(suite: Suite) -> None:
    async with suite.using("tests/httproute-redirect-port.yaml"):
        addr = await accepted(suite, "redirect-port")
        await suite.expect_all(
            addr,
            [
                redirect("/port", port="8083"),
                redirect("/port-and-host", host="example.org", port="8083"),
                redirect("/port-and-status", 301, port="8083"),
                redirect("/port-and-host-and-status", port="8083", host="example.org"),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteRedirectScheme")
async def test_HTTPRouteRedirectScheme(suite: Suite) -> None:
    async with suite.using("tests/httproute-redirect-scheme.yaml"):
        addr = await accepted(suite, "redirect-scheme")
        await suite.expect_all(
            addr,
            [
                redirect("/scheme", scheme="https"),
                redirect("/scheme-and-host", host="example.org", scheme="https"),
                redirect("/scheme-and-status", 301, scheme="https"),
                redirect("/scheme-and-host-and-status", scheme="https", host="example.org"),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteRewriteHost")
async def test_HTTPRouteRewriteHost(suite: Suite) -> None:
    async with suite.using("tests/httproute-rewrite-host.yaml"):
        addr = await accepted(suite, "rewrite-host")
        await suite.expect_all(
            addr,
            [
                Expected(
                    Request(host="rewrite.example", path="/one"),
                    ExpectedRequest(host="one.example.org", path="/one"),
                    backend=V1,
                    namespace=INFRA_NS,
                ),
                Expected(
                    Request(host="rewrite.example", path="/two"),
                    ExpectedRequest(host="example.org", path="/two"),
                    backend=V2,
                    namespace=INFRA_NS,
                ),
                Expected(
                    Request(
                        host="rewrite.example", path="/rewrite-host-and-modify-headers", headers=MODIFY_SENT
                    ),
                    ExpectedRequest(
                        host="test.example.org",
                        path="/rewrite-host-and-modify-headers",
                        headers=MODIFY_SEEN,
                        absent_headers=["X-Header-Remove"],
                    ),
                    backend=V2,
                    namespace=INFRA_NS,
                ),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteRewritePath")
async def test_HTTPRouteRewritePath(suite: Suite) -> None:
    async with suite.using("tests/httproute-rewrite-path.yaml"):
        addr = await accepted(suite, "rewrite-path")

        def to(path: str, seen: str, headers: dict[str, str] | None = None) -> Expected:
            sent = {**MODIFY_SENT, "X-Header-Set": "set-val"} if headers else {}
            return Expected(
                Request(path=path, headers=sent),
                ExpectedRequest(
                    path=seen, headers=headers, absent_headers=["X-Header-Remove"] if headers else []
                ),
                backend=V1,
                namespace=INFRA_NS,
            )

        await suite.expect_all(
            addr,
            [
                to("/prefix/one/two", "/one/two"),
                to("/strip-prefix/three", "/three"),
                to("/strip-prefix", "/"),
                to("/full/one/two", "/one"),
                to("/full/rewrite-path-and-modify-headers/test", "/test", MODIFY_SEEN),
                to("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one", MODIFY_SEEN),
            ],
        )


def response_headers(
    path: str, backend_set: dict[str, str], headers: dict[str, str], absent: tuple[str, ...] = ()
) -> Expected:
    return Expected(
        Request(path=path),
        backend_set_response_headers=backend_set,
        response_headers=headers,
        response_absent_headers=list(absent),
        backend=V1,
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRouteResponseHeaderModifier")
async def test_HTTPRouteResponseHeaderModifier(suite: Suite) -> None:
    async with suite.using("tests/httproute-response-header-modifier.yaml"):
        addr = await accepted(suite, "response-header-modifier")
        other = {"Some-Other-Header": "val"}
        await suite.expect_all(
            addr,
            [
                response_headers("/set", other, {**other, "X-Header-Set": "set-overwrites-values"}),
                response_headers(
                    "/set",
                    {**other, "X-Header-Set": "some-other-value"},
                    {**other, "X-Header-Set": "set-overwrites-values"},
                ),
                response_headers("/add", other, {**other, "X-Header-Add": "add-appends-values"}),
                response_headers(
                    "/add",
                    {**other, "X-Header-Add": "some-other-value"},
                    {**other, "X-Header-Add": "some-other-value,add-appends-values"},
                ),
                response_headers("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
                response_headers(
                    "/multiple",
                    {
                        "X-Header-Set-2": "set-val-2",
                        "X-Header-Add-2": "add-val-2",
                        "X-Header-Remove-2": "remove-val-2",
                        "Another-Header": "another-header-val",
                        "X-Header-Remove-1": "val",
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
                response_headers(
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
                        "X-Lowercase-Add": "lowercase-add",
                        "X-Mixedcase-Add-1": "mixedcase-add-1",
                        "X-Mixedcase-Add-2": "mixedcase-add-2",
                        "X-Uppercase-Add": "uppercase-add",
                        "Another-Header": "another-header-val",
                    },
                    ("x-header-remove", "X-Header-Remove"),
                ),
                Expected(
                    Request(
                        path="/response-and-request-header-modifiers",
                        headers={**MODIFY_SENT, "X-Header-Echo": "echo"},
                    ),
                    ExpectedRequest(
                        path="/response-and-request-header-modifiers",
                        headers={**MODIFY_SEEN, "X-Header-Echo": "echo"},
                        absent_headers=["X-Header-Remove"],
                    ),
                    backend_set_response_headers={
                        "X-Header-Set-2": "set-val-2",
                        "X-Header-Add-2": "add-val-2",
                        "X-Header-Remove-2": "remove-val-2",
                        "Another-Header": "another-header-val",
                        "X-Header-Remove-1": "remove-val-1",
                        "X-Header-Echo": "echo",
                    },
                    response_headers={
                        "X-Header-Set-1": "header-set-1",
                        "X-Header-Set-2": "header-set-2",
                        "X-Header-Add-1": "header-add-1",
                        "X-Header-Add-2": "add-val-2,header-add-2",
                        "Another-Header": "another-header-val",
                        "X-Header-Echo": "echo",
                    },
                    response_absent_headers=["X-Header-Remove-1", "X-Header-Remove-2"],
                    backend=V1,
                    namespace=INFRA_NS,
                ),
            ],
        )


async def mirrored(suite: Suite, route: str, cases: list[tuple[Expected, list[str]]]) -> None:
    """The mirror tests' body: each case with a unique request id, its mirrors watched in their logs."""
    async with suite.using(f"tests/httproute-{route}.yaml"):
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [(INFRA_NS, route)])
        failures = []
        for i, (case, mirrors) in enumerate(cases):
            add_request_id_query_param(case, str(uuid.uuid4()))
            try:
                await suite.expect_mirrored(addr, case, [(INFRA_NS, m) for m in mirrors])
            except ConformanceError as exc:
                failures.append(f"case {i}: {exc}")
        if failures:
            raise ConformanceError("\n".join(failures))


def mirror_case(path: str, modify: bool) -> Expected:
    return Expected(
        Request(path=path, headers=dict(MODIFY_SENT) if modify else {}),
        ExpectedRequest(
            path=path,
            headers=MODIFY_SEEN if modify else None,
            absent_headers=["X-Header-Remove"] if modify else [],
        ),
        backend=V1,
        namespace=INFRA_NS,
    )


@pytest.mark.gateway_conformance("HTTPRouteRequestMirror")
async def test_HTTPRouteRequestMirror(suite: Suite) -> None:
    await mirrored(
        suite,
        "request-mirror",
        [(mirror_case("/mirror", False), [V2]), (mirror_case("/mirror-and-modify-headers", True), [V2])],
    )


@pytest.mark.gateway_conformance("HTTPRouteRequestMultipleMirrors")
async def test_HTTPRouteRequestMultipleMirrors(suite: Suite) -> None:
    await mirrored(
        suite,
        "request-multiple-mirrors",
        [
            (mirror_case("/multi-mirror", False), [V2, V3]),
            (mirror_case("/multi-mirror-and-modify-request-headers", True), [V2, V3]),
        ],
    )


def status(path: str, code: int) -> Expected:
    return Expected(Request(path=path), status=(code,), namespace=INFRA_NS)


@pytest.mark.gateway_conformance("HTTPRouteTimeoutRequest")
async def test_HTTPRouteTimeoutRequest(suite: Suite) -> None:
    async with suite.using("tests/httproute-timeout-request.yaml"):
        addr = await accepted(suite, "request-timeout")
        await suite.expect_all(
            addr,
            [
                status("/request-timeout", 200),
                status("/request-timeout?delay=1s", 504),
                status("/disable-request-timeout?delay=1s", 200),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteTimeoutBackendRequest")
async def test_HTTPRouteTimeoutBackendRequest(suite: Suite) -> None:
    async with suite.using("tests/httproute-timeout-backend-request.yaml"):
        addr = await accepted(suite, "backend-request-timeout")
        await suite.expect_all(
            addr,
            [
                status("/backend-timeout", 200),
                status("/backend-timeout?delay=1s", 504),
                status("/disable-backend-timeout?delay=1s", 200),
            ],
        )


@pytest.mark.gateway_conformance("HTTPRouteBackendRequestHeaderModifier")
async def test_HTTPRouteBackendRequestHeaderModifier(suite: Suite) -> None:
    await request_header_modifier(suite, "tests/httproute-request-header-modifier-backend.yaml")


@pytest.mark.gateway_conformance("HTTPRouteRequestHeaderModifierBackendWeights")
async def test_HTTPRouteRequestHeaderModifierBackendWeights(suite: Suite) -> None:
    async with suite.using("tests/httproute-request-header-modifier-backend-weights.yaml"):
        addr = await accepted(suite, "request-header-modifier-backend-weights")
        expected = Expected(Request(path="/"), namespace=INFRA_NS)
        await suite.expect(addr, expected)
        for _ in range(100):
            got = await suite.round_trip(addr, expected)
            seen = {k.lower(): v for k, v in ((got.request or {}).get("headers") or {}).items()}
            backends = seen.get("backend", [])
            if len(backends) != 1:
                raise ConformanceError(
                    f"expected a single 'Backend' header to have been set, got {len(backends)}"
                )
            pod = str((got.request or {}).get("pod", ""))
            if not pod.startswith(backends[0]):
                raise ConformanceError(
                    "expected the backendRef to have set the correct headers and sent the request to the "
                    f"correct pod, got {pod!r}, want {backends[0]!r}"
                )


@pytest.mark.gateway_conformance("HTTPRouteListenerPortMatching")
async def test_HTTPRouteListenerPortMatching(suite: Suite) -> None:
    async with suite.using("tests/httproute-listener-port-matching.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        gw = (INFRA_NS, "httproute-listener-port-matching")
        addrs = {}
        for listener, route, port in (
            ("listener-1", "backend-v1", ""),
            ("listener-2", "backend-v2", "8080"),
            ("listener-4", "backend-v3", "8090"),
        ):
            addrs[port] = await suite.gateway_and_routes_must_be_accepted(
                gw, [(INFRA_NS, route)], (listener,)
            )
            await suite.resolved_refs_true((INFRA_NS, route), gw)
        cases = [
            Expected(Request(host="foo.com", path="/"), backend=V1, namespace=INFRA_NS),
            Expected(Request(host="foo.com:8080", path="/"), backend=V2, namespace=INFRA_NS),
            Expected(Request(host="bar.com:8080", path="/"), backend=V2, namespace=INFRA_NS),
            Expected(Request(host="foo.com:8090", path="/"), backend=V3, namespace=INFRA_NS),
            Expected(Request(host="bar.com:8090", path="/"), status=(404,)),
        ]
        failures = []
        for i, case in enumerate(cases):
            _, _, port = case.request.host.partition(":")
            try:
                await suite.expect(addrs.get(port, addrs[""]), case)
            except ConformanceError as exc:
                failures.append(f"case {i}: {exc}")
        if failures:
            raise ConformanceError("\n".join(failures))


@pytest.mark.gateway_conformance("HTTPRouteInvalidParentRefSectionNameNotMatchingPort")
async def test_HTTPRouteInvalidParentRefSectionNameNotMatchingPort(suite: Suite) -> None:
    async with suite.using("tests/httproute-invalid-parentref-section-name-not-matching-port.yaml"):
        route = (INFRA_NS, "httproute-listener-section-name-not-matching-port")
        gw = (INFRA_NS, "gateway-with-one-not-matching-port-and-section-name-route")
        await suite.route_must_have_condition(route, gw, ("Accepted", "False", "NoMatchingParent"))
        await suite.route_must_have_no_accepted_parents(route)
        await suite.gateway_must_have_zero_routes(gw)


# httproute-request-percentage-mirror.go: 500 requests, 10 at a time, each mirror's count within 3 standard
# deviations of the binomial's mean, up to 5 batches
CONCURRENT_REQUESTS, TOTAL_REQUESTS, DISTRIBUTION_CHECKS, TOLERANCE_STD_DEVS = 10, 500, 5, 3.0


async def _mirrored_batch(suite: Suite, addr: GwAddr, case: Expected) -> None:
    gate = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one() -> None:
        async with gate:
            await suite.expect(addr, case, required=1)

    await asyncio.gather(*(one() for _ in range(TOTAL_REQUESTS)))


def _mirror_log_count(suite: Suite, mirror: str, path: str, since: dict[str, int]) -> int:
    """DumpEchoLogs since the batch began, the lines GetMirrorLogRegexp(path) matches."""
    pattern = re.compile(f"Echoing back request made to {re.escape(path)} to client")
    ips = [p.ip for p in suite.kubelet.pods if p.namespace == INFRA_NS and p.name.rsplit("-", 2)[0] == mirror]
    logs = suite.kubelet.echo.logs
    return sum(1 for ip in ips for line in logs.get(ip, [])[since.get(ip, 0) :] if pattern.search(line))


def _distribution(count: int, percent: int) -> str:
    p = percent / 100.0
    expected = TOTAL_REQUESTS * p
    margin = TOLERANCE_STD_DEVS * math.sqrt(TOTAL_REQUESTS * p * (1 - p))
    if count < expected - margin or count > expected + margin:
        return (
            f"pod {V2} did not meet the mirroring percentage within tolerance. Expected between "
            f"{expected - margin:f} and {expected + margin:f}, but got {count}"
        )
    return ""


@pytest.mark.gateway_conformance("HTTPRouteRequestPercentageMirror")
async def test_HTTPRouteRequestPercentageMirror(suite: Suite) -> None:
    async with suite.using("tests/httproute-request-percentage-mirror.yaml"):
        addr = await accepted(suite, "request-percentage-mirror")
        cases = [
            (mirror_case("/percent-mirror", False), 20),
            (mirror_case("/percent-mirror-fraction", False), 50),
        ]
        cases.append((mirror_case("/percent-mirror-and-modify-headers", True), 35))
        failures = []
        for i, (case, percent) in enumerate(cases):
            await suite.expect(addr, case)
            why = ""
            for k in range(DISTRIBUTION_CHECKS):
                add_request_id_query_param(case, str(uuid.uuid4()))
                since = {ip: len(lines) for ip, lines in suite.kubelet.echo.logs.items()}
                await _mirrored_batch(suite, addr, case)
                count = _mirror_log_count(suite, V2, case.request.path, since)
                why = _distribution(count, percent)
                print(f"Pod: {V2}, percent {percent}, actual: {count} of {TOTAL_REQUESTS}")
                if not why:
                    break
                print(f"Traffic distribution test failed ({k + 1}/{DISTRIBUTION_CHECKS}): {why}")
                await asyncio.sleep(2.0)
            if why:
                failures.append(f"case {i}: Percentage based mirror distribution tests failed: {why}")
        if failures:
            raise ConformanceError("\n".join(failures))
