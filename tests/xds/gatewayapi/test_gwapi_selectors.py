"""allowedRoutes.namespaces.from: Selector. With no API server, a namespace's labels come from its Namespace
document (applied like any other document); the API server's own kubernetes.io/metadata.name label is added.
A namespace without a Namespace document is never selected."""

from __future__ import annotations

import pytest
from gwapi_helpers import (
    by_severity,
    compile_text,
    conditions,
    convert_text,
    namespace_doc,
    selector_gateway,
    services,
    status_of,
    svc,
)

from xds.diagnostics import Severity

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: web, namespace: infra}]
  rules: [{backendRefs: [{name: a, port: 8080}]}]
---
"""


def accepted(text: str) -> tuple[str, str]:
    conversion, _ = convert_text(text, services(svc("a", "shop")))
    status = status_of(conversion, "HTTPRoute", "r", "shop")
    assert status.parents is not None
    return conditions(status.parents[0].conditions)["Accepted"]


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("{matchLabels: {team: shop}}", "{team: shop, env: prod}"),
        ("{matchLabels: {kubernetes.io/metadata.name: shop}}", ""),  # the API server's automatic label
        ("{matchExpressions: [{key: team, operator: In, values: [shop, cart]}]}", "{team: shop}"),
        ("{matchExpressions: [{key: team, operator: NotIn, values: [other]}]}", "{team: shop}"),
        ("{matchExpressions: [{key: team, operator: Exists}]}", "{team: shop}"),
        ("{matchExpressions: [{key: legacy, operator: DoesNotExist}]}", "{team: shop}"),
        ("{}", ""),  # an empty selector selects every (known) namespace
    ],
)
def test_a_selected_namespace_may_attach(selector: str, labels: str) -> None:
    assert accepted(selector_gateway(selector) + ROUTE + namespace_doc("shop", labels)) == (
        "True",
        "Accepted",
    )


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("{matchLabels: {team: shop}}", "{team: cart}"),
        ("{matchLabels: {team: shop}}", ""),  # unlabeled
        ("{matchLabels: {team: shop, env: prod}}", "{team: shop}"),
        ("{matchExpressions: [{key: team, operator: In, values: [cart]}]}", "{team: shop}"),
        ("{matchExpressions: [{key: team, operator: NotIn, values: [shop]}]}", "{team: shop}"),
        ("{matchExpressions: [{key: team, operator: Exists}]}", "{env: prod}"),
        ("{matchExpressions: [{key: team, operator: DoesNotExist}]}", "{team: shop}"),
    ],
)
def test_a_namespace_the_selector_does_not_match_may_not_attach(selector: str, labels: str) -> None:
    assert accepted(selector_gateway(selector) + ROUTE + namespace_doc("shop", labels)) == (
        "False",
        "NotAllowedByListeners",
    )


def test_a_namespace_without_a_namespace_document_is_never_selected() -> None:
    assert accepted(selector_gateway("{}") + ROUTE) == ("False", "NotAllowedByListeners")
    assert accepted(selector_gateway("{matchExpressions: [{key: x, operator: DoesNotExist}]}") + ROUTE) == (
        "False",
        "NotAllowedByListeners",
    )


def test_selected_routes_are_served_and_counted() -> None:
    conversion, _ = convert_text(
        selector_gateway("{matchLabels: {team: shop}}") + ROUTE + namespace_doc("shop", "{team: shop}"),
        services(svc("a", "shop")),
    )
    [vs] = conversion.virtual_services
    assert vs.http[0].route[0].destination.host == svc("a", "shop")
    listeners = status_of(conversion, "Gateway", "web", "infra").listeners
    assert listeners is not None and listeners[0].attached_routes == 1


@pytest.mark.parametrize("namespace_first", [False, True])
def test_namespace_labels_flow_through_the_compiler(namespace_first: bool) -> None:
    """Namespace documents reach conversion through the ordinary compile path (mecha apply/validate),
    before or after the Gateway API documents."""
    docs = [namespace_doc("shop", "{team: shop}"), selector_gateway("{matchLabels: {team: shop}}") + ROUTE]
    result = compile_text("".join(docs if namespace_first else docs[::-1]))
    assert result.config is not None
    assert any(vs.meta.name.startswith("gateway-api.web") for vs in result.config.virtual_services)
    assert not any("not attached" in w for w in by_severity(result, Severity.WARNING))


@pytest.mark.parametrize(
    ("selector", "field", "reason"),
    [
        (
            "{matchExpressions: [{key: team, operator: In}]}",
            "matchExpressions[0].values",
            "must be specified",
        ),
        (
            "{matchExpressions: [{key: team, operator: Exists, values: [a]}]}",
            "values",
            "may not be specified",
        ),
        ("{matchExpressions: [{key: team, operator: Near}]}", "operator", "expected one of"),
        ("{matchLabels: {team: [a]}}", "matchLabels.team", "expected"),
    ],
)
def test_an_invalid_selector_is_refused(selector: str, field: str, reason: str) -> None:
    errors = by_severity(compile_text(selector_gateway(selector)), Severity.ERROR)
    assert any(field in e and reason in e for e in errors), errors


def test_namespace_labels_must_be_strings() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: [a]}}\n"
    errors = by_severity(compile_text(text), Severity.ERROR)
    assert any("field metadata.labels: expected a map of strings" in e for e in errors), errors
