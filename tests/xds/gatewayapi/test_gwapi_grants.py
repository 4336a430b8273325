"""ReferenceGrant: a route may send traffic to a Service of another namespace only when a ReferenceGrant in
that namespace permits it (from the route's group, kind and namespace; to the Service kind, and its name when
the grant names one). Without one, the backend is RefNotPermitted and its rule answers 500."""

from __future__ import annotations

import pytest
from gwapi_helpers import (
    by_severity,
    compile_text,
    conditions,
    convert_text,
    reference_grant,
    route_line,
    services,
    svc,
    vs_by_host,
)

from xds.diagnostics import Severity

BACKENDS = services(svc("a"), svc("web", "b"), svc("other", "b"))

GATEWAY_A = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: a}
spec:
  gatewayClassName: mecha
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
"""


def route(backend: str = "{name: web, namespace: b, port: 8080}", kind: str = "HTTPRoute") -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: r, namespace: a}}
spec:
  parentRefs: [{{name: web}}]
  rules: [{{backendRefs: [{backend}]}}]
---
"""


def grant(
    namespace: str = "b",
    source: str = "{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: a}",
    target: str = "{group: '', kind: Service, name: web}",
    version: str = "v1beta1",
) -> str:
    return reference_grant(namespace, source, target, version)


def outcome(text: str, kind: str = "HTTPRoute") -> tuple[dict[str, tuple[str, str]], list[str]]:
    conversion, _ = convert_text(GATEWAY_A + text, BACKENDS)
    status = next(s for s in conversion.statuses if s.meta.kind == kind)
    assert status.parents is not None
    return conditions(status.parents[0].conditions), [route_line(r) for r in vs_by_host(conversion)["*"].http]


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha2"])
def test_a_grant_in_the_target_namespace_permits_the_backend(version: str) -> None:
    got, lines = outcome(route() + grant(version=version))
    assert got == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert lines == [f"a.r.0: prefix /, port 80 -> {svc('web', 'b')}:8080"]


def test_a_grant_without_a_name_permits_every_service_of_its_namespace() -> None:
    got, lines = outcome(
        route("{name: other, namespace: b, port: 8080}") + grant(target="{group: '', kind: Service}")
    )
    assert got["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert lines == [f"a.r.0: prefix /, port 80 -> {svc('other', 'b')}:8080"]


@pytest.mark.parametrize(
    "wrong",
    [
        grant(namespace="a"),  # in the route's namespace: grants only count where the target lives
        grant(namespace="c"),
        grant(source="{group: not-the-group, kind: HTTPRoute, namespace: a}"),
        grant(source="{group: gateway.networking.k8s.io, kind: Gateway, namespace: a}"),
        grant(source="{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: a}"),
        grant(source="{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: elsewhere}"),
        grant(target="{group: not-the-group, kind: Service, name: web}"),
        grant(target="{group: '', kind: Secret, name: web}"),
        grant(target="{group: '', kind: Service, name: not-web}"),
    ],
)
def test_an_attacker_route_gets_no_traffic_to_another_namespace_without_the_right_grant(wrong: str) -> None:
    """A route in namespace a naming a Service of namespace b: every grant that does not exactly permit it
    (wrong namespace, source group/kind/namespace, target group/kind/name) leaves the backend unresolved,
    and the rule answers 500: no request reaches b."""
    got, lines = outcome(route() + wrong)
    assert got == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}
    assert lines == ["a.r.0: prefix /, port 80 -> answer 500"]


def test_an_unpermitted_mirror_is_dropped() -> None:
    mirror = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: a}
spec:
  parentRefs: [{name: web}]
  rules:
  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: web, namespace: b, port: 8080}}}
    backendRefs: [{name: a, port: 8080}]
---
"""
    conversion, _ = convert_text(GATEWAY_A + mirror, services(svc("a", "a"), svc("web", "b")))
    assert [route_line(r) for r in vs_by_host(conversion)["*"].http] == [
        f"a.r.0: prefix /, port 80 -> {svc('a', 'a')}:8080"
    ]
    conversion, _ = convert_text(GATEWAY_A + mirror + grant(), services(svc("a", "a"), svc("web", "b")))
    line = route_line(vs_by_host(conversion)["*"].http[0])
    assert line.endswith(f"(mirror {svc('web', 'b')}:8080 100%)"), line


def test_a_grpc_route_needs_a_grant_naming_grpc_route() -> None:
    backend = "{name: web, namespace: b, port: 8080}"
    got, _ = outcome(route(backend, "GRPCRoute") + grant(), "GRPCRoute")
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")
    permit = grant(source="{group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: a}")
    got, _ = outcome(route(backend, "GRPCRoute") + permit, "GRPCRoute")
    assert got["ResolvedRefs"] == ("True", "ResolvedRefs")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{to: [{group: '', kind: Service}]}", "spec.from"),
        ("{from: [{group: '', kind: HTTPRoute, namespace: a}]}", "spec.to"),
        ("{from: [{kind: HTTPRoute, namespace: a}], to: [{group: '', kind: Service}]}", "spec.from[0].group"),
        (
            "{from: [{group: '', kind: HTTPRoute}], to: [{group: '', kind: Service}]}",
            "spec.from[0].namespace",
        ),
        ("{from: [{group: '', kind: HTTPRoute, namespace: a}], to: [{group: ''}]}", "spec.to[0].kind"),
    ],
)
def test_an_invalid_grant_is_refused_with_its_field(spec: str, field: str) -> None:
    meta = "metadata: {name: g, namespace: b}"
    text = f"apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\n{meta}\nspec: {spec}\n"
    errors = by_severity(compile_text(text), Severity.ERROR)
    assert any(f"field {field}: required field is missing" in e for e in errors), errors
