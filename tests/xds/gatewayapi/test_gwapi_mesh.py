"""GAMMA mesh routes: an HTTPRoute or GRPCRoute whose parentRef is a Service becomes a VirtualService bound to
`mesh` for the Service's host (producer: exported everywhere; consumer: to its own namespace only), with
the status the spec asks for; sidecars of each namespace get the routes GEP-1294 says they should."""

from __future__ import annotations

from typing import Any

import pytest
from gwapi_helpers import compile_text, convert_text, route_line, svc

from xds import types
from xds.gatewayapi.status import ObjectStatus
from xds.model.resources import HTTPRoute, Service, ServicePort
from xds.pipeline import SnapshotBuilder, resource_to_dict
from xds.proxy import ProxyIdentity


def registry(*hosts: str) -> dict[str, Service]:
    return {
        h: Service(h, h.split(".")[1], (ServicePort(80, name="http"), ServicePort(8080, name="alt")))
        for h in hosts
    }


def route(
    name: str,
    namespace: str,
    parent: str,
    rules: str = "[{backendRefs: [{name: echo-v1, port: 80}]}]",
    kind: str = "HTTPRoute",
    extra: str = "",
) -> str:
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRefs: [{parent}]{extra}
  rules: {rules}
"""


ECHO = registry(svc("echo", "mesh"), svc("echo-v1", "mesh"), svc("echo-v2", "mesh"))
SPLIT = route(
    "split",
    "mesh",
    "{group: '', kind: Service, name: echo}",
    """
  - matches: [{path: {type: Exact, value: /v1}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: Exact, value: /v2}}]
    backendRefs: [{name: echo-v2, port: 80}]""",
)


def line(r: HTTPRoute) -> str:
    """route_line without the route's name."""
    return route_line(r).split(": ", 1)[1]


def parent_conditions(statuses: list[ObjectStatus], name: str) -> list[tuple[str, str, str]]:
    found = next(s for s in statuses if s.meta.name == name)
    assert found.parents is not None and len(found.parents) == 1
    return [(c.type, c.status, c.reason) for c in found.parents[0].conditions]


def test_producer_route_becomes_a_mesh_virtual_service_for_the_service_host() -> None:
    conversion, _ = convert_text(SPLIT, ECHO)
    (vs,) = conversion.virtual_services
    assert vs.hosts == (svc("echo", "mesh"),)
    assert vs.gateways == ("mesh",) and vs.for_mesh
    assert (vs.meta.namespace, vs.export_to) == ("mesh", ())  # every client namespace
    assert [line(r) for r in vs.http] == [
        "exact /v1 -> echo-v1.mesh.svc.cluster.local:80",
        "exact /v2 -> echo-v2.mesh.svc.cluster.local:80",
    ]
    assert not conversion.gateways  # no Istio Gateway: sidecars serve it
    assert parent_conditions(conversion.statuses, "split") == [
        ("Accepted", "True", "Accepted"),
        ("ResolvedRefs", "True", "ResolvedRefs"),
    ]
    (status,) = conversion.statuses
    assert status.parents is not None
    assert status.parents[0].parent_ref == {"group": "", "kind": "Service", "name": "echo"}


def test_consumer_route_is_exported_to_its_own_namespace_only_and_needs_no_grant() -> None:
    text = route(
        "add-header",
        "consumer",
        "{group: '', kind: Service, name: echo-v1, namespace: mesh}",
        "[{backendRefs: [{name: echo-v1, namespace: mesh, port: 80}]}]",
    )
    conversion, _ = convert_text(text, ECHO)
    (vs,) = conversion.virtual_services
    assert (vs.meta.namespace, vs.hosts, vs.export_to) == (
        "consumer",
        (svc("echo-v1", "mesh"),),
        ("consumer",),
    )
    # GEP-1294: mesh routes reach backends of any namespace without a ReferenceGrant
    assert [line(r) for r in vs.http] == ["prefix / -> echo-v1.mesh.svc.cluster.local:80"]
    assert parent_conditions(conversion.statuses, "add-header")[1] == ("ResolvedRefs", "True", "ResolvedRefs")


def test_routes_of_one_namespace_for_one_service_merge_in_precedence_order() -> None:
    older = route(
        "older",
        "mesh",
        "{group: '', kind: Service, name: echo}",
        "[{matches: [{path: {type: PathPrefix, value: /}}], backendRefs: [{name: echo-v1, port: 80}]}]",
        extra="\n  # oldest",
    ).replace("namespace: mesh}", "namespace: mesh, creationTimestamp: '2026-01-01T00:00:00Z'}")
    newer = route(
        "newer",
        "mesh",
        "{group: '', kind: Service, name: echo}",
        "[{matches: [{path: {type: PathPrefix, value: /api}}], backendRefs: [{name: echo-v2, port: 80}]}]",
    ).replace("namespace: mesh}", "namespace: mesh, creationTimestamp: '2026-02-01T00:00:00Z'}")
    conversion, _ = convert_text(older + newer, ECHO)
    (vs,) = conversion.virtual_services
    assert [line(r) for r in vs.http] == [  # the longest prefix first, whichever route is older
        "exact /api -> echo-v2.mesh.svc.cluster.local:80",
        "prefix /api/ -> echo-v2.mesh.svc.cluster.local:80",
        "prefix / -> echo-v1.mesh.svc.cluster.local:80",
    ]
    assert vs.created == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("parent", "port"),
    [
        ("{group: '', kind: Service, name: echo-v1, port: 80}", 80),
        ("{group: '', kind: Service, name: echo-v1, sectionName: alt}", 8080),
        ("{group: core, kind: Service, name: echo-v1, port: 8080}", 8080),
    ],
)
def test_parent_port_or_section_limits_the_route_to_that_service_port(parent: str, port: int) -> None:
    conversion, _ = convert_text(route("ported", "mesh", parent), ECHO)
    (vs,) = conversion.virtual_services
    assert [line(r) for r in vs.http] == [f"prefix /, port {port} -> echo-v1.mesh.svc.cluster.local:80"]


@pytest.mark.parametrize(
    ("parent", "extra", "reason", "words"),
    [
        ("{group: '', kind: Service, name: nowhere}", "", "NoMatchingParent", "parent service: 'nowhere'"),
        ("{group: '', kind: Service, name: echo-v1, port: 9999}", "", "NoMatchingParent", "port 9999"),
        ("{group: '', kind: Service, name: echo-v1, sectionName: nope}", "", "NoMatchingParent", "'nope'"),
        (
            "{group: '', kind: Service, name: echo-v1, port: 80, sectionName: alt}",
            "",
            "NoMatchingParent",
            "'alt'",
        ),
        (
            "{group: '', kind: Service, name: echo-v1}",
            "\n  hostnames: [echo-v1]",
            "UnsupportedValue",
            "hostnames",
        ),
    ],
)
def test_mesh_parent_not_accepted(parent: str, extra: str, reason: str, words: str) -> None:
    conversion, _ = convert_text(route("bad", "mesh", parent, extra=extra), ECHO)
    assert not conversion.virtual_services  # nothing is served for a parent that does not accept it
    found = next(s for s in conversion.statuses if s.meta.name == "bad")
    assert found.parents is not None
    accepted = found.parents[0].conditions[0]
    assert (accepted.type, accepted.status, accepted.reason) == ("Accepted", "False", reason)
    assert words in accepted.message


def test_mesh_route_with_missing_backend_is_accepted_and_answers_500() -> None:
    text = route(
        "ghost",
        "mesh",
        "{group: '', kind: Service, name: echo}",
        "[{backendRefs: [{name: ghost, port: 80}]}]",
    )
    conversion, _ = convert_text(text, ECHO)
    assert parent_conditions(conversion.statuses, "ghost") == [
        ("Accepted", "True", "Accepted"),
        ("ResolvedRefs", "False", "BackendNotFound"),
    ]
    (vs,) = conversion.virtual_services
    assert [line(r) for r in vs.http] == ["prefix / -> answer 500"]


def test_grpc_route_attached_to_a_service() -> None:
    grpc = registry(svc("grpc", "mesh"))
    rules = (
        "[{matches: [{method: {service: echo.Echo, method: Call}}], backendRefs: [{name: grpc, port: 80}]}]"
    )
    text = route("calls", "mesh", "{group: '', kind: Service, name: grpc}", rules, kind="GRPCRoute")
    conversion, _ = convert_text(text, grpc)
    (vs,) = conversion.virtual_services
    assert (vs.hosts, vs.gateways) == ((svc("grpc", "mesh"),), ("mesh",))
    assert [line(r) for r in vs.http] == ["exact /echo.Echo/Call -> grpc.mesh.svc.cluster.local:80"]


def test_one_route_on_a_gateway_and_a_service_keeps_the_grant_rule_for_the_gateway() -> None:
    text = """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: consumer}
spec:
  gatewayClassName: mecha
  listeners: [{name: http, port: 80, protocol: HTTP}]
""" + route(
        "both",
        "consumer",
        "{name: edge}, {group: '', kind: Service, name: echo, namespace: mesh}",
        "[{backendRefs: [{name: echo-v1, namespace: mesh, port: 80}]}]",
    )
    conversion, _ = convert_text(text, ECHO)
    found = next(s for s in conversion.statuses if s.meta.name == "both")
    assert found.parents is not None
    refs = [(p.parent_ref.get("kind", "Gateway"), p.conditions[1].reason) for p in found.parents]
    assert refs == [("Gateway", "RefNotPermitted"), ("Service", "ResolvedRefs")]
    mesh = next(v for v in conversion.virtual_services if v.gateways == ("mesh",))
    assert [line(r) for r in mesh.http] == ["prefix / -> echo-v1.mesh.svc.cluster.local:80"]


# ---- what each sidecar gets ------------------------------------------------------------------------------

SERVICES = "".join(
    f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: mesh}}
spec:
  hosts: [{name}.mesh.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 10.0.0.{i}}}]
"""
    for i, name in enumerate(("echo-v1", "echo-v2"), start=1)
)
HEADER = """
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: X-Header-Set, value: {value}}}]}}
    backendRefs: [{{name: echo-v1, namespace: mesh, port: 80}}]"""


def sidecar(namespace: str) -> ProxyIdentity:
    meta = {"mode": "sidecar", "namespace": namespace, "outbound_port": 15001}
    return ProxyIdentity.from_node(f"client.{namespace}", {"mecha": meta})


def header_set(text: str, namespace: str) -> str | None:
    """The X-Header-Set value a sidecar of the namespace adds to answers of echo-v1 (None: none)."""
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in result.diagnostics]
    who = sidecar(namespace)
    snap = SnapshotBuilder().build(result.config, [who])[who.id]
    rds: dict[str, Any] = {
        n: resource_to_dict(types.ROUTE, r.body, snake_case=True) for n, r in snap.of(types.ROUTE).items()
    }
    vhost = next(
        v for v in rds["outbound"]["virtual_hosts"] if v["name"] == "echo-v1.mesh.svc.cluster.local:80"
    )
    (only,) = vhost["routes"]
    added = only.get("response_headers_to_add") or []
    return next((h["header"]["value"] for h in added if h["header"]["key"] == "X-Header-Set"), None)


PRODUCER = route(
    "producer", "mesh", "{group: '', kind: Service, name: echo-v1}", HEADER.format(value="producer")
)
CONSUMER = route(
    "consumer",
    "team-a",
    "{group: '', kind: Service, name: echo-v1, namespace: mesh}",
    HEADER.format(value="a"),
)


def test_sidecars_get_the_producer_route_in_every_namespace() -> None:
    for ns in ("mesh", "team-a", "team-b"):
        assert header_set(SERVICES + PRODUCER, ns) == "producer"


def test_a_consumer_route_overrides_the_producer_route_only_in_its_namespace() -> None:
    # the producer route is older: age alone (the oldest VirtualService of a host) would pick it in team-a
    consumer = CONSUMER.replace("team-a}", "team-a, creationTimestamp: '2026-02-01T00:00:00Z'}")
    producer = PRODUCER.replace("mesh}", "mesh, creationTimestamp: '2026-01-01T00:00:00Z'}", 1)
    text = SERVICES + consumer + producer
    assert header_set(text, "team-a") == "a"
    assert header_set(text, "team-b") == "producer"
    assert header_set(text, "mesh") == "producer"
    assert header_set(SERVICES + CONSUMER, "team-b") is None  # no producer route: the default route


def test_a_consumer_route_next_to_the_producer_route_is_no_duplicate_virtual_service() -> None:
    result = compile_text(SERVICES + CONSUMER + PRODUCER)
    assert not [str(d) for d in result.diagnostics if d.code == "vs-duplicate"]
    # two consumer namespaces' routes for one Service do not conflict either; a public Istio VirtualService
    # for the same host still conflicts with the producer route, as two VirtualServices do
    other = CONSUMER.replace("team-a", "team-b")
    istio = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: written, namespace: mesh}
spec:
  hosts: [echo-v1.mesh.svc.cluster.local]
  http: [{route: [{destination: {host: echo-v2.mesh.svc.cluster.local}}]}]
"""
    result = compile_text(SERVICES + CONSUMER + other + PRODUCER + istio)
    duplicates = [d for d in result.diagnostics if d.code == "vs-duplicate"]
    assert len(duplicates) == 1 and "gateway-api.mesh" in str(duplicates[0])
