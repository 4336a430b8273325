"""Status as Kubernetes would show it, computed without an API server: GatewayClass Accepted; Gateway
Accepted/Programmed with per-listener conditions and attachedRoutes; HTTPRoute parents[] with the spec's
reasons; observedGeneration from metadata.generation."""

from __future__ import annotations

from gwapi_helpers import GATEWAY, conditions, convert_text, services, status_of, svc

from xds.gatewayapi.convert import convert
from xds.gatewayapi.documents import read_documents
from xds.gatewayapi.status import Condition, TransitionClock, render
from xds.sources import load_text

BACKENDS = services(svc("a"))


def http_route(
    parent: str = "{name: web}", hostnames: str = "[]", backend: str = "{name: a, port: 8080}"
) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{parent}]
  hostnames: {hostnames}
  rules: [{{backendRefs: [{backend}]}}]
---
"""


def parent_conditions(text: str) -> dict[str, tuple[str, str]]:
    conversion, _ = convert_text(text, BACKENDS)
    status = status_of(conversion, "HTTPRoute", "r")
    assert status.parents is not None and len(status.parents) == 1
    return conditions(status.parents[0].conditions)


def test_an_attached_route_is_accepted_with_resolved_refs() -> None:
    assert parent_conditions(GATEWAY + http_route()) == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
    }


def test_a_missing_backend_is_backend_not_found() -> None:
    got = parent_conditions(GATEWAY + http_route(backend="{name: gone, port: 8080}"))
    assert got == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}


def test_an_unsupported_backend_kind_is_invalid_kind() -> None:
    got = parent_conditions(GATEWAY + http_route(backend="{group: example.com, kind: Bucket, name: b}"))
    assert got["ResolvedRefs"] == ("False", "InvalidKind")


def test_a_cross_namespace_backend_is_not_permitted_without_reference_grants() -> None:
    got = parent_conditions(GATEWAY + http_route(backend="{name: a, namespace: other, port: 8080}"))
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")


def test_a_listener_from_same_namespace_refuses_another_namespace() -> None:
    text = GATEWAY + http_route("{name: web, namespace: default}").replace(
        "namespace: default}", "namespace: shop}", 1
    )
    conversion, _ = convert_text(text, BACKENDS)
    status = status_of(conversion, "HTTPRoute", "r", "shop")
    assert status.parents is not None
    assert conditions(status.parents[0].conditions)["Accepted"] == ("False", "NotAllowedByListeners")


def test_no_matching_listener_hostname() -> None:
    gateway = GATEWAY.replace("protocol: HTTP}", "protocol: HTTP, hostname: shop.example.com}")
    got = parent_conditions(gateway + http_route(hostnames="[blog.example.com]"))
    assert got["Accepted"] == ("False", "NoMatchingListenerHostname")


def test_a_section_or_port_no_listener_has_is_no_matching_parent() -> None:
    for parent in ("{name: web, sectionName: https}", "{name: web, port: 443}"):
        assert parent_conditions(GATEWAY + http_route(parent))["Accepted"] == ("False", "NoMatchingParent")


def test_a_missing_gateway_is_reflected_in_status() -> None:
    got = parent_conditions(http_route("{name: nowhere}"))
    assert got["Accepted"] == ("False", "NoMatchingParent")


def test_a_gamma_service_parent_is_accepted_when_the_service_exists() -> None:
    # GAMMA mesh routes are served (test_gwapi_mesh.py); a Service missing from the registry is no parent
    got = parent_conditions(GATEWAY + http_route("{group: '', kind: Service, name: a}"))
    assert got["Accepted"] == ("True", "Accepted")
    got = parent_conditions(GATEWAY + http_route("{group: '', kind: Service, name: nowhere}"))
    assert got["Accepted"] == ("False", "NoMatchingParent")


def test_routes_of_another_controller_s_gateway_get_no_parent_status_from_mecha() -> None:
    text = GATEWAY.replace("gatewayClassName: mecha", "gatewayClassName: nginx") + http_route()
    conversion, _ = convert_text(text, BACKENDS)
    assert status_of(conversion, "HTTPRoute", "r").parents == []
    gateway = status_of(conversion, "Gateway", "web")
    assert conditions(gateway.conditions) == {
        "Accepted": ("Unknown", "Pending"),
        "Programmed": ("Unknown", "Pending"),
    }


def test_dropped_rules_make_the_route_partially_invalid_or_not_accepted() -> None:
    cors = "{type: CORS, cors: {allowOrigins: ['*']}}"
    two_rules = f"""  rules:
  - backendRefs: [{{name: a, port: 8080}}]
  - filters: [{cors}]
    backendRefs: [{{name: a, port: 8080}}]"""
    mixed = http_route().replace("  rules: [{backendRefs: [{name: a, port: 8080}]}]", two_rules)
    got = parent_conditions(GATEWAY + mixed)
    assert got["Accepted"] == ("True", "Accepted") and got["PartiallyInvalid"] == ("True", "UnsupportedValue")
    only = http_route().replace("[{backendRefs:", f"[{{filters: [{cors}], backendRefs:")
    got = parent_conditions(GATEWAY + only)
    assert got["Accepted"] == ("False", "UnsupportedValue") and "PartiallyInvalid" not in got


def test_gateway_and_listener_status_with_attached_routes() -> None:
    gateway = GATEWAY.replace(
        "  - {name: http, port: 80, protocol: HTTP}\n",
        """  - {name: http, port: 80, protocol: HTTP}
  - {name: other, port: 8080, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
  - {name: secure, port: 443, protocol: HTTPS}
  - {name: raw, port: 8080, protocol: TCP}
""",
    )
    conversion, _ = convert_text(gateway + http_route(), BACKENDS)
    status = status_of(conversion, "Gateway", "web")
    assert conditions(status.conditions) == {
        "Accepted": ("True", "ListenersNotValid"),
        "Programmed": ("True", "Programmed"),
    }
    assert status.listeners is not None
    by_name = {ls.name: ls for ls in status.listeners}
    assert by_name["http"].attached_routes == 1
    assert conditions(by_name["http"].conditions) == {
        "Accepted": ("True", "Accepted"),
        "Programmed": ("True", "Programmed"),
        "Conflicted": ("False", "NoConflicts"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
    }
    assert by_name["other"].supported_kinds == []
    assert conditions(by_name["other"].conditions)["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    secure = conditions(by_name["secure"].conditions)  # HTTPS without a certificate: not programmed
    assert secure["Accepted"] == ("True", "Accepted")
    assert secure["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert secure["Programmed"] == ("False", "Invalid")
    for name in ("other", "raw"):  # HTTP and TCP on one port: neither is distinct
        got = conditions(by_name[name].conditions)
        assert got["Conflicted"] == ("True", "ProtocolConflict") and got["Accepted"][0] == "False"
        assert by_name[name].attached_routes == 0


def test_a_gateway_without_valid_listeners_is_not_accepted() -> None:
    gateway = GATEWAY.replace("port: 80, protocol: HTTP}", "port: 443, protocol: UDP}")
    conversion, _ = convert_text(gateway)
    assert conditions(status_of(conversion, "Gateway", "web").conditions) == {
        "Accepted": ("False", "ListenersNotValid"),
        "Programmed": ("False", "Invalid"),
    }
    assert conversion.gateways == []  # no Istio Gateway: nothing to serve


def test_a_route_not_accepted_is_not_counted_as_attached() -> None:
    cors = "{type: CORS, cors: {allowOrigins: ['*']}}"
    conversion, _ = convert_text(
        GATEWAY + http_route().replace("[{backendRefs:", f"[{{filters: [{cors}], backendRefs:")
    )
    listeners = status_of(conversion, "Gateway", "web").listeners
    assert listeners is not None and listeners[0].attached_routes == 0


def test_gateway_class_accepted_for_mecha_s_controller_only() -> None:
    text = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: mine}
spec: {controllerName: mecha.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/controller}
---
"""
    conversion, _ = convert_text(text + GATEWAY.replace("gatewayClassName: mecha", "gatewayClassName: mine"))
    assert conditions(status_of(conversion, "GatewayClass", "mine").conditions) == {
        "Accepted": ("True", "Accepted")
    }
    assert not [s for s in conversion.statuses if s.meta.name == "theirs"]
    assert [g.meta.name for g in conversion.gateways] == ["web"]  # class `mine` is Mecha's


def test_rendered_status_keeps_observed_generation_and_transition_times() -> None:
    docs, _ = load_text(GATEWAY + http_route(), "gateway-api.yaml")
    docs[0].body["metadata"]["generation"] = 7  # what the config store keeps (the loader drops it)
    inputs, _ = read_documents(docs)
    now = ["2024-01-01T00:00:00Z"]
    clock = TransitionClock(lambda: now[0])
    rendered = render(status_of(convert(inputs, BACKENDS), "Gateway", "web"), clock)
    assert (
        rendered["apiVersion"] == "gateway.networking.k8s.io/v1" and rendered["metadata"]["generation"] == 7
    )
    accepted = rendered["status"]["conditions"][0]
    assert accepted["observedGeneration"] == 7 and accepted["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    listener = rendered["status"]["listeners"][0]
    assert listener["attachedRoutes"] == 1 and listener["conditions"][0]["observedGeneration"] == 7
    # later: the same status keeps its time, a changed status is a transition
    now[0] = "2024-01-02T00:00:00Z"
    key = ("Gateway", "default", "web", "Accepted")
    assert clock(key, Condition("Accepted", "True", "Accepted", "")) == "2024-01-01T00:00:00Z"
    assert clock(key, Condition("Accepted", "False", "ListenersNotValid", "")) == "2024-01-02T00:00:00Z"


def test_a_namespace_selector_allows_no_route_yet() -> None:
    selector = "allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}"
    got = parent_conditions(GATEWAY.replace("protocol: HTTP}", f"protocol: HTTP, {selector}") + http_route())
    assert got["Accepted"] == ("False", "NotAllowedByListeners")
