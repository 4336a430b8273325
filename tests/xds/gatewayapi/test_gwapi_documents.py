"""Gateway API documents are accepted where Istio's are (folders, apply) and checked like them: what the CRDs
would refuse is refused with file, document, field and reason; what Mecha does not act on yet is accepted
and reported; dangling references are accepted (status says what is wrong, test_gwapi_status.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gwapi_helpers import GATEWAY, by_severity, compile_text

from xds.diagnostics import Severity
from xds.sources import load_paths

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop}}]
    backendRefs: [{name: shop, port: 8080}]
"""


def _refusal(text: str) -> str:
    result = compile_text(text)
    assert not result.ok and result.config is None, "the change must be refused"
    errors = by_severity(result, Severity.ERROR)
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_gateway_class_gateway_and_route_are_accepted(version: str) -> None:
    text = f"""apiVersion: gateway.networking.k8s.io/{version}
kind: GatewayClass
metadata: {{name: mecha}}
spec: {{controllerName: mecha.io/gateway-controller}}
---
{GATEWAY.replace("/v1", "/" + version)}{ROUTE.replace("/v1", "/" + version)}"""
    result = compile_text(text)
    assert result.ok, by_severity(result, Severity.ERROR)
    assert result.config is not None
    assert [vs.meta.name for vs in result.config.virtual_services] == ["gateway-api.web.any-host"]
    gateways = [c for c in result.config.carried if c.meta.kind == "Gateway"]
    assert [(g.meta.namespace, g.meta.name, g.api_version) for g in gateways] == [
        ("default", "web", "networking.istio.io/v1")
    ]


def test_a_folder_of_gateway_api_files_loads(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(GATEWAY)
    (folder / "route.yaml").write_text(ROUTE)
    docs, diags = load_paths([folder])
    assert not diags
    assert sorted(d.kind for d in docs) == ["Gateway", "HTTPRoute"]


def test_an_unsupported_version_is_refused() -> None:
    message = _refusal(ROUTE.replace("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1alpha1"))
    assert "field apiVersion" in message and "use gateway.networking.k8s.io/{v1, v1beta1}" in message


def test_a_kind_typo_in_the_group_is_refused_with_a_hint() -> None:
    message = _refusal(ROUTE.replace("kind: HTTPRoute", "kind: HTTPRoutes"))
    assert "did you mean HTTPRoute?" in message


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("value: /shop", "value: shop"), "spec.rules[0].matches[0].path.value", "start with '/'"),
        (("value: /shop", "value: /a//b"), "spec.rules[0].matches[0].path.value", "must not contain '//'"),
        (("type: PathPrefix", "type: Prefix"), "spec.rules[0].matches[0].path.type", "expected one of Exact"),
        (("port: 8080}", "weight: 1}"), "spec.rules[0].backendRefs[0].port", "Must have port for Service"),
        (("port: 8080}", "port: 8080, wieght: 1}"), "spec.rules[0].backendRefs[0].wieght", "unknown field"),
        (("name: web}", "name: Web}"), "spec.parentRefs[0].name", "expected an object name"),
        (("[{name: web}]", "[{name: web}, {name: web}]"), "spec.parentRefs", "sectionName must be specified"),
        (
            ("/shop}}]", "/shop}}]\n    filters: [{type: RequestRedirect, requestRedirect: {}}]"),
            "spec.rules[0].filters",
            "RequestRedirect filter must not be used together with backendRefs",
        ),
        (
            ("value: /shop}}]", "value: /shop}}]\n    filters: [{type: URLRewrite}]"),
            "spec.rules[0].filters[0].urlRewrite",
            "must be specified for URLRewrite filter.type",
        ),
        (
            ("value: /shop}}]", "value: /shop}, method: FETCH}]"),
            "spec.rules[0].matches[0].method",
            "expected one of GET",
        ),
        (
            ("{path: {type: PathPrefix, value: /shop}}", "{path: {type: RegularExpression, value: '(a'}}"),
            "spec.rules[0].matches[0].path.value",
            "not an RE2 regex",
        ),
    ],
)
def test_what_the_crd_refuses_is_refused_with_field_and_reason(
    change: tuple[str, str], field: str, reason: str
) -> None:
    message = _refusal(GATEWAY + ROUTE.replace(*change))
    assert "gateway-api.yaml doc 1 (HTTPRoute default/shop)" in message
    assert f"field {field}:" in message and reason in message


@pytest.mark.parametrize(
    ("listeners", "field", "reason"),
    [
        ("[]", "spec.listeners", "required field is missing"),
        (
            "[{name: a, port: 80, protocol: HTTP}, {name: a, port: 81, protocol: HTTP}]",
            "spec.listeners[1].name",
            "Listener name must be unique",
        ),
        (
            "[{name: a, port: 80, protocol: HTTP}, {name: b, port: 80, protocol: HTTP}]",
            "spec.listeners[1]",
            "Combination of port, protocol and hostname must be unique",
        ),
        (
            "[{name: a, port: 80, protocol: HTTP, tls: {mode: Terminate}}]",
            "spec.listeners[0].tls",
            "tls must not be specified for protocols",
        ),
        ("[{name: a, port: 0, protocol: HTTP}]", "spec.listeners[0].port", "expected an integer 1-65535"),
        (
            "[{name: a, port: 80, protocol: HTTP, hostname: '*'}]",
            "spec.listeners[0].hostname",
            "expected a hostname",
        ),
    ],
)
def test_invalid_gateways_are_refused(listeners: str, field: str, reason: str) -> None:
    written = "listeners:\n  - {name: http, port: 80, protocol: HTTP}"
    text = GATEWAY.replace(written, f"listeners: {listeners}")
    message = _refusal(text)
    assert "(Gateway default/web)" in message and f"field {field}:" in message and reason in message


def test_fields_not_acted_on_yet_are_accepted_and_reported() -> None:
    text = GATEWAY.replace(
        "  gatewayClassName: mecha\n", "  gatewayClassName: mecha\n  addresses: [{value: 10.0.0.1}]\n"
    ) + ROUTE.replace("port: 8080}]", "port: 8080}]\n    retry: {attempts: 3}")
    result = compile_text(text)
    assert result.ok
    warned = by_severity(result, Severity.WARNING)
    assert any("field spec.addresses: not supported yet" in w for w in warned), warned
    assert any("field spec.rules[0].retry: not supported yet" in w for w in warned), warned


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1alpha2", "UDPRoute"),
        ("v1", "ListenerSet"),
    ],
)
def test_kinds_of_the_group_not_read_yet_are_accepted_and_reported_dropped(
    api_version: str, kind: str
) -> None:
    text = f"""apiVersion: gateway.networking.k8s.io/{api_version}
kind: {kind}
metadata: {{name: r, namespace: default}}
spec: {{}}
"""
    result = compile_text(text)
    assert result.ok
    warned = by_severity(result, Severity.WARNING)
    assert any(f"{kind} is not honoured" in w for w in warned), warned


@pytest.mark.parametrize(
    ("api_version", "kind", "spec"),
    [
        ("v1", "GRPCRoute", "{}"),
        ("v1alpha2", "GRPCRoute", "{}"),
        (
            "v1beta1",
            "ReferenceGrant",
            "{from: [{group: '', kind: Service, namespace: a}], to: [{group: '', kind: Service}]}",
        ),
        (
            "v1",
            "ReferenceGrant",
            "{from: [{group: '', kind: Service, namespace: a}], to: [{group: '', kind: Service}]}",
        ),
    ],
)
def test_grpc_routes_and_reference_grants_are_read(api_version: str, kind: str, spec: str) -> None:
    meta = "metadata: {name: r, namespace: default}"
    text = f"apiVersion: gateway.networking.k8s.io/{api_version}\nkind: {kind}\n{meta}\nspec: {spec}\n"
    result = compile_text(text)
    assert result.ok, by_severity(result, Severity.ERROR)
    assert not any("not honoured" in w for w in by_severity(result, Severity.WARNING))


def test_dangling_references_are_accepted() -> None:
    """A backend Service that does not exist and a parent Gateway that does not exist: accepted, warned."""
    text = ROUTE.replace("name: web}", "name: nowhere}") + "---\n" + GATEWAY + ROUTE.replace("shop", "cart")
    result = compile_text(text, strict=True)  # not even strict mode refuses them: the status tells
    assert result.ok, by_severity(result, Severity.ERROR)
    warned = by_severity(result, Severity.WARNING)
    assert any("Gateway default/nowhere not found" in w for w in warned), warned
    assert any("BackendNotFound: backend(cart.default.svc.cluster.local) not found" in w for w in warned)


def test_an_istio_gateway_and_a_gateway_api_gateway_of_one_name_collide() -> None:
    """The config store keys documents by (kind, namespace, name): both cannot be held, so both in one set
    are refused as duplicates rather than one silently replacing the other."""
    istio = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
"""
    message = _refusal(istio + GATEWAY)
    assert "duplicate Gateway default/web" in message
