"""Config that was accepted and broke (or silently did nothing) later is refused up front, with file,
document, field and reason (issue #10): kind typos, duplicate YAML keys, bad names, unknown Dapr component
types, VirtualServices without hosts."""

from __future__ import annotations

import pytest
from cfg_helpers import compile_text, errors

from xds.analyze import analyze_documents
from xds.model.dapr_types import KNOWN_COMPONENT_TYPES
from xds.sources import load_text

SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.0.1}]
---
"""


def _refused(text: str) -> list[str]:
    result = compile_text(text, "mesh.yaml")
    assert not result.ok and result.config is None, "the whole change must be refused"
    return [str(d) for d in errors(result)]


# ---- kinds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind", "hint"),
    [
        ("networking.istio.io/v1", "VirtualServce", "did you mean VirtualService?"),
        ("networking.istio.io/v1beta1", "destinationrule", "did you mean DestinationRule?"),
        ("security.istio.io/v1", "AuthorizationPolicies", "did you mean AuthorizationPolicy?"),
        ("dapr.io/v1alpha1", "Componnet", "did you mean Component?"),
        ("networking.istio/v1", "VirtualService", "did you mean VirtualService (networking.istio.io)?"),
    ],
)
def test_unknown_kind_is_an_error_with_a_hint(api_version: str, kind: str, hint: str) -> None:
    text = (
        SERVICE
        + f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: r}}\nspec: {{hosts: [reviews]}}\n"
    )
    (problem,) = _refused(text)
    assert "mesh.yaml doc 1" in problem and "kind" in problem and hint in problem, problem


def test_analyze_reports_the_typo_instead_of_dropping_nothing() -> None:
    docs, _ = load_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: r}\n", "a.yaml"
    )
    report = analyze_documents(docs)
    assert not report.skipped
    assert any("did you mean VirtualService?" in d.message for d in report.errors)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1", "ServiceAccount"),
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("networking.istio.io/v1alpha3", "ExternalService"),
    ],
)
def test_kinds_skipped_on_purpose_stay_skipped(api_version: str, kind: str) -> None:
    result = compile_text(f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x}}\n")
    assert result.ok and [loc.kind for loc in result.skipped] == [kind]


def test_a_namespace_is_read_not_skipped() -> None:
    """Its labels select Gateway API routes (allowedRoutes.namespaces.selector)."""
    result = compile_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: a}}\n")
    assert result.ok and result.skipped == []


def test_unknown_group_is_refused() -> None:
    (problem,) = _refused("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    assert "example.com/v1 Widget" in problem


# ---- duplicate keys ----------------------------------------------------------------------------------


def test_duplicate_yaml_key_names_both_lines() -> None:
    text = SERVICE + (
        "apiVersion: networking.istio.io/v1\n"  # line 10 (SERVICE: 9 lines)
        "kind: VirtualService\n"
        "metadata: {name: r}\n"
        "spec:\n"
        "  hosts: [reviews]\n"  # line 14
        "  http: [{route: [{destination: {host: reviews}}]}]\n"
        "  hosts: [ratings]\n"  # line 16: PyYAML kept this one silently
    )
    docs, diags = load_text(text, "dup.yaml")
    assert [d.kind for d in docs] == ["ServiceEntry"]  # the broken document is not loaded
    (diag,) = diags
    assert diag.severity == "error" and diag.location.file == "dup.yaml" and diag.location.document == 1
    assert "duplicate key 'hosts' at line 16 (first at line 14" in diag.message


def test_merge_keys_are_not_duplicates() -> None:
    text = "base: &b {x: 1}\nkind: K\napiVersion: v1\nmetadata: {<<: *b, name: n}\n"
    docs, diags = load_text(text)
    assert not diags and docs[0].body["metadata"] == {"x": 1, "name": "n"}


# ---- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a/b"),
        ("name", ".."),
        ("name", "has space"),
        ("name", "nul\\0byte"),
        ("name", "Upper"),
        ("name", "a" * 254),
        ("namespace", "a" * 64),
        ("namespace", "dotted.ns"),
        ("namespace", "../etc"),
    ],
)
def test_bad_names_and_namespaces_are_refused(field: str, value: str) -> None:
    text = f'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{{field}: "{value}"}}\n'
    if field == "namespace":
        text = text.replace("metadata: {", "metadata: {name: ok, ")
    docs, diags = load_text(text, "names.yaml")
    assert not docs
    (diag,) = diags
    assert diag.field == f"metadata.{field}" and "DNS-1123" in diag.message, diag.message


def test_longest_valid_names_are_accepted() -> None:
    name, namespace = ".".join(["a" * 63] * 4)[:253], "n" * 63
    docs, diags = load_text(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
    )
    assert not diags and docs[0].location.name == name


# ---- Dapr component types ----------------------------------------------------------------------------


def _component(type_: str, version: str = "v1") -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: store}\n"
        f"spec: {{type: {type_}, version: {version}}}\n"
    )


def test_unknown_component_type_is_refused() -> None:
    (problem,) = _refused(_component("state.rediss"))
    assert "spec.type" in problem and "did you mean state.redis?" in problem


def test_unknown_component_version_is_refused() -> None:
    (problem,) = _refused(_component("state.redis", "v2"))
    assert "spec.type" in problem and "no version 'v2'" in problem


def test_known_component_type_is_accepted() -> None:
    assert compile_text(_component("state.redis")).ok


def test_component_types_match_the_capability_registry() -> None:
    from capabilities.registry import BACKEND_MODULES, known_types

    # other tests may register throwaway types: compare the backends the registry ships
    assert set(BACKEND_MODULES) == {t for t, _ in KNOWN_COMPONENT_TYPES}
    assert {(t, v) for t, v in known_types() if t in BACKEND_MODULES} == KNOWN_COMPONENT_TYPES


# ---- VirtualService hosts ----------------------------------------------------------------------------


def test_virtual_service_without_hosts_is_refused() -> None:
    text = SERVICE + (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        "spec: {http: [{route: [{destination: {host: reviews}}]}]}\n"
    )
    (problem,) = _refused(text)
    assert "spec.hosts" in problem and "needs hosts" in problem


def test_delegate_without_hosts_is_accepted() -> None:
    text = SERVICE + (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root}\n"
        "spec: {hosts: [reviews], http: [{delegate: {name: leaf}}]}\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: leaf}\n"
        "spec: {http: [{route: [{destination: {host: reviews}}]}]}\n"
    )
    result = compile_text(text)
    assert result.ok, [str(d) for d in errors(result)]


# ---- regexes (RE2 as Envoy checks it; test_cfg_envoy.py proves the same cases against a real Envoy) ---


def _vs_with(match: str, extra: str = "") -> str:
    return SERVICE + (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        f"spec: {{hosts: [reviews], http: [{{match: [{match}], route: [{{destination: {{host: reviews}}}}]"
        f"{extra}}}]}}\n"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (_vs_with("{headers: {x-user: {regex: '(?=a)'}}}"), "spec.http[0].match[0].headers.x-user.regex"),
        (_vs_with("{queryParams: {q: {regex: 'a{2,200}'}}}"), "spec.http[0].match[0].queryParams.q.regex"),
        (_vs_with("{authority: {regex: '(a'}}"), "spec.http[0].match[0].authority.regex"),
        (
            _vs_with("{uri: {prefix: /}}", ", corsPolicy: {allowOrigins: [{regex: 'x{1001}'}]}"),
            "spec.http[0].corsPolicy.allowOrigins[0].regex",
        ),
        (
            _vs_with("{uri: {prefix: /}}", ", rewrite: {uriRegexRewrite: {match: '(?<=a)b', rewrite: x}}"),
            "spec.http[0].rewrite.uriRegexRewrite.match",
        ),
    ],
)
def test_regex_envoy_would_refuse_is_refused(text: str, field: str) -> None:
    (problem,) = _refused(text)
    assert f"field {field}:" in problem and "mesh.yaml doc 1" in problem, problem


def test_header_regex_star_still_means_present() -> None:
    assert compile_text(_vs_with("{headers: {x-user: {regex: '*'}}}")).ok


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("{principals: ['*/sa/(bad']}", "spec.rules[0].from[0].source.principals[0]"),
        ("{namespaces: ['ns[']}", "spec.rules[0].from[0].source.namespaces[0]"),
    ],
)
def test_authorization_policy_values_that_become_bad_regexes_are_refused(source: str, field: str) -> None:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
        f"spec: {{rules: [{{from: [{{source: {source}}}]}}]}}\n"
    )
    (problem,) = _refused(text)
    assert f"field {field}:" in problem and "Envoy regex" in problem, problem


def test_authorization_policy_wildcards_are_accepted() -> None:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
        "spec: {rules: [{from: [{source: {principals: ['*/sa/web', '*'], namespaces: ['team-*']}}]}]}\n"
    )
    assert compile_text(text).ok
