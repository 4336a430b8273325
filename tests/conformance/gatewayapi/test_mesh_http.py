"""MESH-HTTP tests of the upstream suite (conformance/tests/mesh/*.go), ported one to one: requests are made
from a mesh pod through its real sidecar Envoy (mesh.py) to the Services of conformance/mesh/manifests.yaml,
with the routes of each test attached to those Services (GAMMA)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conformance.gatewayapi.mesh import APP_ECHO_V1, APP_ECHO_V2, CONSUMER_NS, MESH_NS, Mesh
from tests.conformance.gatewayapi.suite import ConformanceError, Expected, ExpectedRequest, Request, Suite
from tests.conformance.gatewayapi.weight import MAX_TEST_RETRIES, weighted_distribution

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]
V1, V2 = "echo-v1", "echo-v2"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    m = Mesh(suite, tmp_path_factory.mktemp("gateway-conformance-mesh"))
    try:
        await m.start()
        yield m
    finally:
        await m.stop()


def ok(path: str, backend: str, host: str = "", **headers: str) -> Expected:
    return Expected(Request(host=host, path=path, headers=headers), backend=backend, namespace=MESH_NS)


@pytest.mark.gateway_conformance("MeshBasic")
async def test_MeshBasic(mesh: Mesh) -> None:
    client = mesh.connect(APP_ECHO_V1)
    await client.expect(Expected(Request(host="echo")))


@pytest.mark.gateway_conformance("MeshTrafficSplit")
async def test_MeshTrafficSplit(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/mesh-split.yaml"):
        client = mesh.connect(APP_ECHO_V1)
        await client.expect_all([ok("/v1", V1, "echo"), ok("/v2", V2, "echo")])


@pytest.mark.gateway_conformance("MeshHTTPRouteSimpleSameNamespace")
async def test_MeshHTTPRouteSimpleSameNamespace(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-simple-same-namespace.yaml"):
        await mesh.connect(APP_ECHO_V1).expect(ok("/", V1, "echo"))


@pytest.mark.gateway_conformance("MeshHTTPRouteMatching")
async def test_MeshHTTPRouteMatching(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-matching.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                ok("/", V1),
                ok("/example", V1),
                ok("/", V1, Version="one"),
                ok("/v2", V2),
                ok("/v2/example", V2),
                ok("/", V2, Version="two"),
                ok("/v2/", V2),
                ok("/v2example", V1),  # not a path segment prefix: not /v2
                ok("/foo/v2/example", V1),
            ]
        )


def _headers(path: str, sent: dict[str, str], seen: dict[str, str], absent: tuple[str, ...] = ()) -> Expected:
    return Expected(
        Request(path=path, headers=sent),
        expected_request=ExpectedRequest(path=path, headers=seen or None, absent_headers=list(absent)),
        backend=V1,
        namespace=MESH_NS,
    )


HEADER_CASES = [
    _headers(
        "/set",
        {"Some-Other-Header": "val"},
        {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"},
    ),
    _headers(
        "/set",
        {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
        {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"},
    ),
    _headers(
        "/add",
        {"Some-Other-Header": "val"},
        {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"},
    ),
    _headers(
        "/add",
        {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
        {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"},
    ),
    _headers("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
    _headers(
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
    _headers(
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
]


@pytest.mark.gateway_conformance("MeshHTTPRouteRequestHeaderModifier")
async def test_MeshHTTPRouteRequestHeaderModifier(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-request-header-modifier.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(HEADER_CASES)


@pytest.mark.gateway_conformance("MeshHTTPRouteBackendRequestHeaderModifier")
async def test_MeshHTTPRouteBackendRequestHeaderModifier(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-request-header-modifier-backend.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(HEADER_CASES)


@pytest.mark.gateway_conformance("MeshHTTPRouteWeight")
async def test_MeshHTTPRouteWeight(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-weight.yaml"):
        client = mesh.connect(APP_ECHO_V1)
        expected = Expected(Request(host="echo", path="/"), namespace=MESH_NS)
        await client.expect(expected)  # the request succeeds before the distribution check

        async def send() -> str:
            answer = await client.request(expected)
            return answer.hostname

        why = ""
        for _ in range(MAX_TEST_RETRIES):
            why = await weighted_distribution(send, {V1: 0.7, V2: 0.3})
            if not why:
                return
        raise ConformanceError(f"Weighted distribution tests failed: {why}")


def _redirect(path: str, status: int) -> Expected:
    """The mesh client compares a redirect's status only (compareRequest reads no Location)."""
    return Expected(
        Request(host="echo", path=path, unfollow_redirect=True), status=(status,), namespace=MESH_NS
    )


@pytest.mark.gateway_conformance("MeshHTTPRouteRedirectHostAndStatus")
async def test_MeshHTTPRouteRedirectHostAndStatus(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-redirect-host-and-status.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [_redirect("/hostname-redirect", 302), _redirect("/host-and-status", 301)]
        )


@pytest.mark.gateway_conformance("MeshHTTPRouteRedirectPath")
async def test_MeshHTTPRouteRedirectPath(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-redirect-path.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                _redirect("/original-prefix/lemon", 302),
                _redirect("/full/path/original", 302),
                _redirect("/path-and-host", 302),
                _redirect("/path-and-status", 301),
                _redirect("/full-path-and-host", 302),
                _redirect("/full-path-and-status", 301),
            ]
        )


@pytest.mark.gateway_conformance("MeshHTTPRouteRedirectPort")
async def test_MeshHTTPRouteRedirectPort(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-redirect-port.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                _redirect("/port", 302),
                _redirect("/port-and-host", 302),
                _redirect("/port-and-status", 301),
                _redirect("/port-and-host-and-status", 302),
            ]
        )


@pytest.mark.gateway_conformance("MeshHTTPRouteSchemeRedirect")
async def test_MeshHTTPRouteSchemeRedirect(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/httproute-redirect-scheme.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                _redirect("/scheme", 302),
                _redirect("/scheme-and-host", 302),
                _redirect("/scheme-and-status", 301),
                _redirect("/scheme-and-host-and-status", 302),
            ]
        )


@pytest.mark.gateway_conformance("MeshHTTPRouteRewritePath")
async def test_MeshHTTPRouteRewritePath(suite: Suite, mesh: Mesh) -> None:
    def case(path: str, seen: dict[str, str] | None = None, sent: dict[str, str] | None = None) -> Expected:
        return Expected(
            Request(host="echo", path=path, headers=sent or {}),
            expected_request=ExpectedRequest(
                headers=seen, absent_headers=["X-Header-Remove"] if sent else []
            ),
            backend=V1,
            namespace=MESH_NS,
        )

    async with suite.using("tests/mesh/httproute-rewrite-path.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                case("/prefix/one/two"),
                case("/strip-prefix/three"),
                case("/strip-prefix"),
                case("/full/one/two"),
                case(
                    "/full/rewrite-path-and-modify-headers/test",
                    {
                        "X-Header-Add": "header-val-1",
                        "X-Header-Add-Append": "append-val-1,header-val-2",
                        "X-Header-Set": "set-overwrites-values",
                    },
                    {
                        "X-Header-Remove": "remove-val",
                        "X-Header-Add-Append": "append-val-1",
                        "X-Header-Set": "set-val",
                    },
                ),
            ]
        )


@pytest.mark.gateway_conformance("MeshHTTPRouteQueryParamMatching")
async def test_MeshHTTPRouteQueryParamMatching(suite: Suite, mesh: Mesh) -> None:
    def missing(path: str) -> Expected:
        return Expected(Request(path=path), status=(404,))

    async with suite.using("tests/mesh/httproute-query-param-matching.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                ok("/?animal=whale", V1),
                ok("/?animal=dolphin", V2),
                ok("/?animal=whale&otherparam=irrelevant", V1),
                ok("/?animal=dolphin&color=yellow", V2),
                missing("/?color=blue"),
                missing("/?animal=dog"),
                missing("/?animal=whaledolphin"),
                missing("/"),
                ok("/path1?animal=whale", V1),
                ok("/?animal=whale", V2, version="one"),
                ok("/path3?animal=shark", V1),
                ok("/path4?animal=kraken", V1, version="three"),
                missing("/?animal=shark"),
                missing("/path4?animal=kraken"),
                ok("/path5?animal=hydra", V1),
            ]
        )


@pytest.mark.gateway_conformance("MeshFrontend")
async def test_MeshFrontend(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/mesh-frontend.yaml"):
        client, v2 = mesh.connect(APP_ECHO_V1), mesh.connect(APP_ECHO_V2)
        await client.expect_all(
            [
                Expected(Request(host="echo-v2"), response_headers={"X-Header-Set": "set"}, backend=V2),
                Expected(
                    Request(host=f"{v2.address}:8080"), response_absent_headers=["X-Header-Set"], backend=V2
                ),
            ]
        )


@pytest.mark.gateway_conformance("MeshPorts")
async def test_MeshPorts(suite: Suite, mesh: Mesh) -> None:
    async with suite.using("tests/mesh/mesh-ports.yaml"):
        await mesh.connect(APP_ECHO_V1).expect_all(
            [
                Expected(Request(host="echo-v1"), response_headers={"X-Header-Set": "v1"}, backend=V1),
                Expected(Request(host="echo-v1:8080"), response_absent_headers=["X-Header-Set"], backend=V1),
                Expected(Request(host="echo-v2"), response_headers={"X-Header-Set": "v2"}, backend=V2),
                Expected(Request(host="echo-v2:8080"), response_headers={"X-Header-Set": "v2"}, backend=V2),
            ]
        )


@pytest.mark.gateway_conformance("MeshConsumerRoute")
async def test_MeshConsumerRoute(suite: Suite, mesh: Mesh) -> None:
    host = f"echo-v1.{MESH_NS}"
    async with suite.using("tests/mesh/mesh-consumer-route.yaml"):
        consumer = mesh.connect(APP_ECHO_V1, CONSUMER_NS)
        await consumer.expect(
            Expected(Request(host=host), response_headers={"X-Header-Set": "set"}, backend=V1)
        )
        producer = mesh.connect(APP_ECHO_V1, MESH_NS)
        await producer.expect(
            Expected(Request(host=host), response_absent_headers=["X-Header-Set"], backend=V1)
        )
