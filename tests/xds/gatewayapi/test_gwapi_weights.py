"""Weights exactly as the spec says (issue #20): relative integers handed to Envoy as they are (no rounding
to percentages), and the share of invalid backendRefs answered 500 (gRPC: UNAVAILABLE) instead of going to
the valid ones; the compiled config stays free of diagnostics and the Istio path's bytes do not change."""

from __future__ import annotations

from envoy_data_plane.envoy.config.route import v3 as rte
from gwapi_helpers import GATEWAY, by_severity, compile_text, convert_text, services, svc, vs_by_host

from xds.diagnostics import Severity
from xds.gatewayapi.invalid import INVALID_GRPC_BACKEND, INVALID_HTTP_BACKEND
from xds.model.resources import HTTPRoute
from xds.translate.route import route_action, route_action_bytes

BACKENDS = services(svc("a"), svc("b"), svc("c"))
SERVICE_ENTRIES = "".join(
    f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {n}, namespace: default}}
spec:
  hosts: [{svc(n)}]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
"""
    for n in ("a", "b", "c")
)


def route(backends: str, kind: str = "HTTPRoute", name: str = "r", hostname: str = "") -> str:
    hosts = f"\n  hostnames: [{hostname}]" if hostname else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: web}}]{hosts}
  rules:
  - backendRefs: {backends}
---
"""


def served(text: str) -> HTTPRoute:
    conversion, _ = convert_text(GATEWAY + text, BACKENDS)
    return vs_by_host(conversion)["*"].http[0]


def weights(r: HTTPRoute) -> list[tuple[str, int | None]]:
    return [(d.destination.host, d.weight) for d in r.route]


def test_relative_weights_are_kept_as_written() -> None:
    r = served(route("[{name: a, port: 8080, weight: 1}, {name: b, port: 8080, weight: 199}]"))
    assert weights(r) == [(svc("a"), 1), (svc("b"), 199)]
    unset = served(route("[{name: a, port: 8080}, {name: b, port: 8080}, {name: c, port: 8080, weight: 1}]"))
    assert weights(unset) == [(svc("a"), 1), (svc("b"), 1), (svc("c"), 1)]


def test_the_share_of_an_invalid_backend_goes_to_a_cluster_less_500() -> None:
    r = served(route("[{name: a, port: 8080, weight: 1}, {name: gone, port: 8080, weight: 2}]"))
    assert weights(r) == [(svc("a"), 1), (INVALID_HTTP_BACKEND, 2)]
    several = served(
        route(
            "[{name: a, port: 8080, weight: 3}, {name: gone, port: 8080, weight: 2},"
            " {name: b, namespace: other, port: 8080, weight: 5}]"
        )
    )
    assert weights(several) == [(svc("a"), 3), (INVALID_HTTP_BACKEND, 7)]  # not found + not permitted
    assert served(route("[{name: gone, port: 8080}]")).direct_response is not None  # all invalid: 500


def test_grpc_invalid_share_answers_unavailable() -> None:
    r = served(route("[{name: a, port: 8080, weight: 1}, {name: gone, port: 8080, weight: 1}]", "GRPCRoute"))
    assert weights(r) == [(svc("a"), 1), (INVALID_GRPC_BACKEND, 1)]


def test_the_route_action_answers_500_for_a_missing_cluster() -> None:
    """The weighted clusters carry the integers; a cluster Envoy does not know answers 500, on the fast byte
    path too; a route without an invalid share keeps Envoy's default (the Istio bytes are unchanged)."""
    result = compile_text(
        SERVICE_ENTRIES
        + GATEWAY
        + route(
            "[{name: a, port: 8080, weight: 1}, {name: b, port: 8080, weight: 199}]",
            name="ok",
            hostname="ok.example.com",
        )
        + route("[{name: a, port: 8080, weight: 1}, {name: gone, port: 8080, weight: 2}]")
    )
    assert result.config is not None, by_severity(result, Severity.ERROR)
    warnings = by_severity(result, Severity.WARNING)
    assert len(warnings) == 1 and "BackendNotFound: backend(gone.default.svc.cluster.local)" in warnings[0]
    by_name = {r.name: r for v in result.config.virtual_services for r in v.http}
    split = route_action(by_name["default.r.0"], result.config, 80)
    assert [(c.name, c.weight) for c in split.weighted_clusters.clusters] == [
        (f"outbound|8080||{svc('a')}", 1),
        (f"outbound|80||{INVALID_HTTP_BACKEND}", 2),
    ]
    code = rte.RouteActionClusterNotFoundResponseCode
    assert split.cluster_not_found_response_code == code.INTERNAL_SERVER_ERROR
    fast = rte.RouteAction.parse(route_action_bytes(by_name["default.r.0"], result.config, 80))
    assert fast == split
    plain = route_action(by_name["default.ok.0"], result.config, 80)
    assert [c.weight for c in plain.weighted_clusters.clusters] == [1, 199]
    assert plain.cluster_not_found_response_code == code.SERVICE_UNAVAILABLE
    fast = rte.RouteAction.parse(route_action_bytes(by_name["default.ok.0"], result.config, 80))
    assert fast == plain


ENTRIES = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ab, namespace: default}
spec:
  hosts: [svc-a.default.svc.cluster.local, svc-b.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.0.1}]
"""


def test_a_written_virtual_service_named_like_a_converted_one_is_still_checked() -> None:
    """The weights rule is relaxed for routes converted from Gateway API by their origin, not by their name: a
    VirtualService written as `gateway-api.x` whose weights do not sum to 100 is refused as any other."""
    text = (
        ENTRIES
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gateway-api.x, namespace: default}
spec:
  hosts: [svc-a.default.svc.cluster.local]
  http:
  - route:
    - {destination: {host: svc-a.default.svc.cluster.local}, weight: 30}
    - {destination: {host: svc-b.default.svc.cluster.local}, weight: 30}
"""
    )
    result = compile_text(text)
    assert any("weight" in d.message for d in result.diagnostics if d.severity is Severity.ERROR), [
        d.message for d in result.diagnostics
    ]
