"""GRPCRoute -> gateway routes: service/method matches (Exact, RegularExpression) as path matches, header
matches, the spec's precedence, filters, weights, status parents[], hostnames, and sharing an HTTP listener
with HTTPRoutes (never the same hostname)."""

from __future__ import annotations

import pytest
from gwapi_helpers import (
    GATEWAY,
    by_severity,
    compile_text,
    conditions,
    convert_text,
    route_line,
    services,
    status_of,
    svc,
    vs_by_host,
)

from xds.diagnostics import Severity
from xds.model.resources import Service, ServicePort, StringMatch

BACKENDS = services(svc("v1"), svc("v2"), svc("v3"), svc("web"))
SVC = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"


def _route(kind: str, rules: str, name: str, hostnames: str, created: str) -> str:
    """A route of the default namespace on Gateway web; rules is the YAML of its `rules:` list."""
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: default{stamp}}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: {hostnames}
  rules:
{rules}---
"""


def grpc_route(rules: str, name: str = "g", hostnames: str = "[]", created: str = "") -> str:
    return _route("GRPCRoute", rules, name, hostnames, created)


def http_route(name: str = "h", hostnames: str = "[]", created: str = "") -> str:
    return _route("HTTPRoute", "  - backendRefs: [{name: web, port: 8080}]\n", name, hostnames, created)


def lines(text: str, host: str = "*") -> list[str]:
    conversion, _ = convert_text(GATEWAY + text, BACKENDS)
    return [route_line(r) for r in vs_by_host(conversion)[host].http]


def test_service_and_method_matches_become_path_matches_in_precedence_order() -> None:
    rules = f"""  - matches: [{{method: {{service: {SVC}}}}}]
    backendRefs: [{{name: v3, port: 8080}}]
  - matches: [{{method: {{service: {SVC}, method: Echo}}}}]
    backendRefs: [{{name: v1, port: 8080}}]
  - matches: [{{method: {{method: EchoTwo}}}}]
    backendRefs: [{{name: v2, port: 8080}}]
  - matches: [{{method: {{type: RegularExpression, service: 'grpc\\.health\\..*', method: 'Ch.*'}}}}]
    backendRefs: [{{name: v2, port: 8080}}]
  - backendRefs: [{{name: web, port: 8080}}]
"""
    assert lines(grpc_route(rules)) == [
        f"default.g.1: exact /{SVC}/Echo, port 80 -> {svc('v1')}:8080",
        f"default.g.0: prefix /{SVC}/, port 80 -> {svc('v3')}:8080",
        f"default.g.2: regex /[^/]+/EchoTwo, port 80 -> {svc('v2')}:8080",
        "default.g.3: regex /grpc\\.health\\..*/Ch.*, port 80 -> " + f"{svc('v2')}:8080",
        f"default.g.4: prefix /, port 80 -> {svc('web')}:8080",
    ]


def test_header_matches_and_precedence_by_header_count() -> None:
    rules = """  - matches: [{headers: [{name: Version, value: two}]}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: v1, port: 8080}]
  - matches:
    - headers: [{type: RegularExpression, name: color, value: 'bl.*'}]
    - headers: [{name: color, value: green}]
    backendRefs: [{name: v1, port: 8080}]
"""
    conversion, _ = convert_text(GATEWAY + grpc_route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http
    assert http[0].matches[0].headers == (
        ("version", StringMatch("exact", "two")),
        ("color", StringMatch("exact", "orange")),
    )
    assert http[1].matches[0].headers == (("version", StringMatch("exact", "two")),)  # names lowercased
    assert http[2].matches[0].headers == (("color", StringMatch("regex", "bl.*")),)
    assert http[3].matches[0].headers == (("color", StringMatch("exact", "green")),)


def test_weights_filters_and_mirrors() -> None:
    rules = """  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-grpc, value: mecha}], remove: [x-secret]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-served-by, value: gateway}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: v3, port: 8080}, percent: 50}
    backendRefs:
    - {name: v1, port: 8080, weight: 70}
    - {name: v2, port: 8080, weight: 30}
    - {name: v3, port: 8080, weight: 0}
"""
    assert lines(grpc_route(rules)) == [
        f"default.g.0: prefix /, port 80 -> {svc('v1')}:8080@70 + {svc('v2')}:8080@30 "
        "(request set x-grpc=mecha; request remove x-secret; response add x-served-by=gateway; "
        f"mirror {svc('v3')}:8080 50%)"
    ]


def test_a_rule_without_usable_backends_answers_unavailable() -> None:
    rules = "  - backendRefs: [{name: gone, port: 8080}]\n  - matches: [{method: {service: a.B}}]\n"
    assert lines(grpc_route(rules)) == [
        "default.g.1: prefix /a.B/, port 80 -> answer 503",
        "default.g.0: prefix /, port 80 -> answer 503",
    ]


def test_status_parents_as_for_http_routes() -> None:
    rules = "  - backendRefs: [{name: gone, port: 8080}]\n"
    conversion, _ = convert_text(GATEWAY + grpc_route(rules), BACKENDS)
    status = status_of(conversion, "GRPCRoute", "g")
    assert status.parents is not None
    assert conditions(status.parents[0].conditions) == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("False", "BackendNotFound"),
    }
    gateway = status_of(conversion, "Gateway", "web")
    assert gateway.listeners is not None
    assert gateway.listeners[0].attached_routes == 1
    assert [k for _, k in gateway.listeners[0].supported_kinds] == ["HTTPRoute", "GRPCRoute"]


def test_an_extension_ref_filter_drops_the_rule() -> None:
    rules = """  - filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: t}}]
    backendRefs: [{name: v1, port: 8080}]
"""
    conversion, _ = convert_text(GATEWAY + grpc_route(rules), BACKENDS)
    status = status_of(conversion, "GRPCRoute", "g")
    assert status.parents is not None
    assert conditions(status.parents[0].conditions)["Accepted"] == ("False", "UnsupportedValue")


def test_a_listener_allowing_only_http_routes_refuses_grpc_routes() -> None:
    only_http = GATEWAY.replace(
        "protocol: HTTP}", "protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}"
    )
    conversion, _ = convert_text(
        only_http + grpc_route("  - backendRefs: [{name: v1, port: 8080}]\n"), BACKENDS
    )
    status = status_of(conversion, "GRPCRoute", "g")
    assert status.parents is not None
    assert conditions(status.parents[0].conditions)["Accepted"] == ("False", "NotAllowedByListeners")


def test_grpc_and_http_routes_of_distinct_hostnames_share_a_listener() -> None:
    text = grpc_route("  - backendRefs: [{name: v1, port: 8080}]\n", hostnames="[grpc.example.com]")
    text += http_route(hostnames="[www.example.com]")
    conversion, _ = convert_text(GATEWAY + text, BACKENDS)
    by_host = vs_by_host(conversion)
    assert [route_line(r) for r in by_host["grpc.example.com"].http] == [
        f"default.g.0: prefix /, port 80 -> {svc('v1')}:8080"
    ]
    assert [route_line(r) for r in by_host["www.example.com"].http] == [
        f"default.h.0: prefix /, port 80 -> {svc('web')}:8080"
    ]
    for kind, name in (("GRPCRoute", "g"), ("HTTPRoute", "h")):
        parents = status_of(conversion, kind, name).parents
        assert parents is not None and conditions(parents[0].conditions)["Accepted"] == ("True", "Accepted")
    listeners = status_of(conversion, "Gateway", "web").listeners
    assert listeners is not None and listeners[0].attached_routes == 2


@pytest.mark.parametrize(("grpc_created", "http_created"), [("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z")])
def test_intersecting_hostnames_keep_the_older_route_only(grpc_created: str, http_created: str) -> None:
    """The spec: a newer HTTPRoute/GRPCRoute whose hostnames intersect those of an older route of the other
    kind on the listener is not accepted there."""
    text = grpc_route(
        "  - backendRefs: [{name: v1, port: 8080}]\n", hostnames="['*.example.com']", created=grpc_created
    )
    text += http_route(hostnames="[www.example.com]", created=http_created)
    conversion, _ = convert_text(GATEWAY + text, BACKENDS)
    grpc_parents = status_of(conversion, "GRPCRoute", "g").parents
    http_parents = status_of(conversion, "HTTPRoute", "h").parents
    assert grpc_parents is not None and http_parents is not None
    assert conditions(grpc_parents[0].conditions)["Accepted"] == ("True", "Accepted")
    assert conditions(http_parents[0].conditions)["Accepted"] == ("False", "HostnameConflict")
    assert "www.example.com" not in vs_by_host(conversion)


@pytest.mark.parametrize(
    ("match", "field", "reason"),
    [
        ("{method: {type: Exact}}", "method", "One or both of 'service' or 'method' must be specified"),
        ("{method: {service: 'a/b'}}", "method.service", "service must only contain valid characters"),
        ("{method: {method: 'Get/All'}}", "method.method", "method must only contain valid characters"),
        ("{method: {type: RegularExpression, service: '(a'}}", "method.service", "not an RE2 regex"),
        ("{headers: [{name: a, value: x}, {name: a, value: y}]}", "headers[1].name", "duplicate entry"),
        ("{method: {service: a, type: Prefix}}", "method.type", "expected one of"),
    ],
)
def test_invalid_grpc_routes_are_refused(match: str, field: str, reason: str) -> None:
    text = GATEWAY + grpc_route(f"  - matches: [{match}]\n")
    errors = by_severity(compile_text(text), Severity.ERROR)
    assert any(f"spec.rules[0].matches[0].{field}" in e and reason in e for e in errors), errors


def test_grpc_filter_types_of_http_routes_are_refused() -> None:
    rules = "  - filters: [{type: URLRewrite, urlRewrite: {hostname: a.example.com}}]\n"
    errors = by_severity(compile_text(GATEWAY + grpc_route(rules)), Severity.ERROR)
    assert any("spec.rules[0].filters[0].type" in e for e in errors), errors


def test_a_longer_regex_still_comes_after_exact_matches() -> None:
    rules = """  - matches: [{method: {type: RegularExpression, service: 'a\\\\.Bbbbbbbbb.*', method: 'G.*'}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{method: {service: a.B, method: Get}}]
    backendRefs: [{name: v1, port: 8080}]
"""
    assert [line.split(":")[0] for line in lines(grpc_route(rules))] == ["default.g.1", "default.g.0"]


def test_a_backend_port_that_is_not_http2_is_reported() -> None:
    conversion, _ = convert_text(
        GATEWAY + grpc_route("  - backendRefs: [{name: v1, port: 8080}]\n"), BACKENDS
    )
    assert any("is HTTP, not HTTP/2" in d.message for d in conversion.diagnostics)
    grpc_backend = {svc("v1"): Service(svc("v1"), "default", (ServicePort(8080, "GRPC"),))}
    conversion, _ = convert_text(
        GATEWAY + grpc_route("  - backendRefs: [{name: v1, port: 8080}]\n"), grpc_backend
    )
    assert not any("not HTTP/2" in d.message for d in conversion.diagnostics)
