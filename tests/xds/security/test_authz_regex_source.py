"""The regex the pre-push check validates for an AuthorizationPolicy peer value (issue #10, "Refuse what would
break later") is the one the RBAC filter sends Envoy: one definition (xds/model/regex.py) for both, in
istiod's order (pilot/pkg/security/authz/matcher StringMatcherWithPrefix: a leading `*` wins over a
trailing one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import config_of
from envoy_data_plane.envoy.extensions.filters.http.rbac import v3 as rbac_http

from xds.model.security import security_policies
from xds.model.security_checks import authz_regex
from xds.translate.security.rbac import rbac_http_filters


def _regexes(node: Any) -> set[str]:
    """Every safe_regex of a decoded message (snake_case or camelCase keys)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("safe_regex", "safeRegex"):
                found.add(value["regex"])
            else:
                found |= _regexes(value)
    elif isinstance(node, list):
        for value in node:
            found |= _regexes(value)
    return found


def _rbac_regexes(field: str, value: str) -> set[str]:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: p, namespace: default}\n"
        f"spec: {{rules: [{{from: [{{source: {{{field}: [{json.dumps(value)}]}}}}]}}]}}\n"
    )
    config = config_of(text)
    filters = rbac_http_filters(security_policies(config.carried), "default", {})
    assert filters, "no RBAC filter"
    return _regexes(rbac_http.Rbac.parse(filters[0].typed_config.value).to_dict())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("principals", "*/sa/web"),
        ("principals", "*web*"),  # istiod: the leading `*` wins -> a regex, not a prefix
        ("principals", "cluster.local/ns/default/*"),
        ("principals", "*"),
        ("notPrincipals", "*/sa/web"),
        ("namespaces", "team-*"),
        ("namespaces", "default"),
        ("notNamespaces", "*-test"),
    ],
)
def test_checked_regex_is_the_translated_one(field: str, value: str) -> None:
    checked = authz_regex(field, value)
    expected = {checked} if checked is not None else set()
    if field in ("principals", "notPrincipals") and value == "*":
        expected = {".+"}  # any authenticated peer (istiod), no regex of the value
    assert _rbac_regexes(field, value) == expected
