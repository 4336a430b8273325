"""AuthorizationPolicy -> Envoy RBAC HTTP filters, as istiod's authz builder does (istio-mapping.md §8).

Filters in order: AUDIT (action LOG), DENY, ALLOW; no ALLOW policy = no ALLOW filter (allow all). Each
rules[i] becomes policy `ns[<ns>]-policy[<name>]-rule[<i>]`; a policy without rules matches nothing, so an
empty ALLOW policy denies everything. requestPrincipals / request.auth.* read the `istio_authn` dynamic
metadata that the authn filter (jwt.py) publishes after jwt_authn verified a token.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import replace

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.rbac import v3 as rbac
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.http.rbac import v3 as http_rbac
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.filters.network.rbac import v3 as net_rbac
from envoy_data_plane.envoy.type.matcher import v3 as m
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.diagnostics import Diagnostic, Severity
from xds.model.meta import Labels
from xds.model.regex import namespace_regex, principal_regex
from xds.model.security import (
    AuthorizationPolicy,
    AuthzRule,
    Condition,
    Operation,
    SecurityPolicies,
    Source,
    selects,
)

RBAC_FILTER = "envoy.filters.http.rbac"
AUTHN_METADATA = "istio_authn"
SHADOW_PREFIX = "istio_dry_run_allow_"
_ANY_PERMISSION = rbac.Permission(any=True)
_ANY_PRINCIPAL = rbac.Principal(any=True)

# ---- string helpers (istiod matcher.StringMatcher / *WithPrefix) -----------------------------------------


def string_matcher(value: str, prefix: str = "", ignore_case: bool = False) -> m.StringMatcher:
    """'*' -> any non-empty (.+); 'x*' -> prefix; '*x' -> suffix; else exact. prefix is prepended (spiffe://)."""
    if value == "*":
        return m.StringMatcher(safe_regex=m.RegexMatcher(regex=".+"), ignore_case=ignore_case)
    if value.endswith("*"):
        return m.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        assert not prefix, "a suffix after a prefix is a regex (xds.model.regex.principal_regex)"
        return m.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return m.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def header_matcher(name: str, value: str, ignore_case: bool = False) -> rte.HeaderMatcher:
    if value == "*":
        return rte.HeaderMatcher(name=name, present_match=True)
    sm = string_matcher(value, ignore_case=ignore_case)
    return rte.HeaderMatcher(name=name, string_match=sm)


def cidr(value: str) -> core.CidrRange:
    net = ipaddress.ip_network(value, strict=False)
    address = value.split("/", 1)[0] if "/" not in value else str(net.network_address)
    return core.CidrRange(address_prefix=address, prefix_len=net.prefixlen)


def authn_metadata(path: list[str], value: m.ValueMatcher) -> m.MetadataMatcher:
    return m.MetadataMatcher(
        filter=AUTHN_METADATA, path=[m.MetadataMatcherPathSegment(key=k) for k in path], value=value
    )


def _metadata_string(key: str, value: str) -> m.MetadataMatcher:
    return authn_metadata([key], m.ValueMatcher(string_match=string_matcher(value)))


def _metadata_list(path: list[str], value: str) -> m.MetadataMatcher:
    """Claims and audiences are lists in istio_authn metadata: match when one element matches."""
    one_of = m.ValueMatcher(string_match=string_matcher(value))
    return authn_metadata(path, m.ValueMatcher(list_match=m.ListMatcher(one_of=one_of)))


def _claim_path(key: str) -> list[str]:
    """request.auth.claims[a][b] -> [request.auth.claims, a, b]."""
    inner = key[len("request.auth.claims") :]
    return ["request.auth.claims", *[p for p in inner.strip("[]").split("][") if p]]


def _header_name(key: str) -> str:
    return key[len("request.headers[") : -1]


# ---- permissions (to[] + destination-side when keys) -------------------------------------------------

PermMaker = Callable[[str], rbac.Permission]
PrinMaker = Callable[[str], rbac.Principal]


def _perm_or(values: Iterable[str], make: PermMaker) -> rbac.Permission:
    return rbac.Permission(or_rules=rbac.PermissionSet(rules=[make(v) for v in values]))


def _prin_or(values: Iterable[str], make: PrinMaker) -> rbac.Principal:
    return rbac.Principal(or_ids=rbac.PrincipalSet(ids=[make(v) for v in values]))


def _host(v: str) -> rbac.Permission:
    return rbac.Permission(header=header_matcher(":authority", v, ignore_case=True))


def _method(v: str) -> rbac.Permission:
    return rbac.Permission(header=header_matcher(":method", v))


def _path(v: str) -> rbac.Permission:
    return rbac.Permission(url_path=m.PathMatcher(path=string_matcher(v)))


def _port(v: str) -> rbac.Permission:
    return rbac.Permission(destination_port=int(v))


def _dest_ip(v: str) -> rbac.Permission:
    return rbac.Permission(destination_ip=cidr(v))


def _sni(v: str) -> rbac.Permission:
    return rbac.Permission(requested_server_name=string_matcher(v))


_PERMISSION_KEYS: dict[str, PermMaker] = {
    "destination.ip": _dest_ip,
    "destination.port": _port,
    "connection.sni": _sni,
}


def _pairs(
    rules: list[rbac.Permission], values: tuple[str, ...], not_values: tuple[str, ...], make: PermMaker
) -> None:
    if values:
        rules.append(_perm_or(values, make))
    if not_values:
        rules.append(rbac.Permission(not_rule=_perm_or(not_values, make)))


def _permission(op: Operation | None, conditions: tuple[Condition, ...]) -> rbac.Permission:
    rules: list[rbac.Permission] = []
    if op is not None:
        _pairs(rules, op.hosts, op.not_hosts, _host)
        _pairs(rules, op.methods, op.not_methods, _method)
        _pairs(rules, op.paths, op.not_paths, _path)
        _pairs(rules, op.ports, op.not_ports, _port)
    for c in conditions:
        make = _PERMISSION_KEYS.get(c.key)
        if make is not None:
            _pairs(rules, c.values, c.not_values, make)
    return rbac.Permission(and_rules=rbac.PermissionSet(rules=rules or [_ANY_PERMISSION]))


# ---- principals (from[] + source-side when keys) ------------------------------------------------------


def _principal_name(v: str) -> rbac.Principal:
    regex = principal_regex(v)  # `*suffix` (istiod: the spiffe:// prefix, then any characters)
    if regex is not None:
        sm = m.StringMatcher(safe_regex=m.RegexMatcher(regex=regex))
    else:
        sm = string_matcher(v, prefix="" if v == "*" else "spiffe://")
    return rbac.Principal(authenticated=rbac.PrincipalAuthenticated(principal_name=sm))


def _namespace(v: str) -> rbac.Principal:
    sm = m.StringMatcher(safe_regex=m.RegexMatcher(regex=namespace_regex(v)))
    return rbac.Principal(authenticated=rbac.PrincipalAuthenticated(principal_name=sm))


def _request_principal(v: str) -> rbac.Principal:
    return rbac.Principal(metadata=_metadata_string("request.auth.principal", v))


def _remote_ip(v: str) -> rbac.Principal:
    return rbac.Principal(remote_ip=cidr(v))


def _direct_ip(v: str) -> rbac.Principal:
    return rbac.Principal(direct_remote_ip=cidr(v))


def _principal_maker(key: str) -> PrinMaker | None:
    if key.startswith("request.headers["):
        name = _header_name(key)
        return lambda v: rbac.Principal(header=header_matcher(name, v))
    if key.startswith("request.auth.claims["):
        path = _claim_path(key)
        return lambda v: rbac.Principal(metadata=_metadata_list(path, v))
    return {
        "source.ip": _direct_ip,
        "remote.ip": _remote_ip,
        "source.namespace": _namespace,
        "source.principal": _principal_name,
        "request.auth.principal": _request_principal,
        "request.auth.audiences": lambda v: rbac.Principal(
            metadata=_metadata_list(["request.auth.audiences"], v)
        ),
        "request.auth.presenter": lambda v: rbac.Principal(
            metadata=_metadata_string("request.auth.presenter", v)
        ),
    }.get(key)


def _ids(
    ids: list[rbac.Principal], values: tuple[str, ...], not_values: tuple[str, ...], make: PrinMaker
) -> None:
    if values:
        ids.append(_prin_or(values, make))
    if not_values:
        ids.append(rbac.Principal(not_id=_prin_or(not_values, make)))


def _principal(src: Source | None, conditions: tuple[Condition, ...]) -> rbac.Principal:
    ids: list[rbac.Principal] = []
    if src is not None:
        _ids(ids, src.principals, src.not_principals, _principal_name)
        _ids(ids, src.request_principals, src.not_request_principals, _request_principal)
        _ids(ids, src.namespaces, src.not_namespaces, _namespace)
        _ids(ids, src.remote_ip_blocks, src.not_remote_ip_blocks, _remote_ip)
        _ids(ids, src.ip_blocks, src.not_ip_blocks, _direct_ip)
    for c in conditions:
        make = _principal_maker(c.key)
        if make is not None:
            _ids(ids, c.values, c.not_values, make)
    return rbac.Principal(and_ids=rbac.PrincipalSet(ids=ids or [_ANY_PRINCIPAL]))


def rule_policy(rule: AuthzRule) -> rbac.Policy:
    ops: list[Operation | None] = list(rule.operations) or [None]
    srcs: list[Source | None] = list(rule.sources) or [None]
    return rbac.Policy(
        permissions=[_permission(op, rule.conditions) for op in ops],
        principals=[_principal(src, rule.conditions) for src in srcs],
    )


MATCH_NEVER = rbac.Policy(
    permissions=[rbac.Permission(not_rule=_ANY_PERMISSION)],
    principals=[rbac.Principal(not_id=_ANY_PRINCIPAL)],
)


def policy_name(p: AuthorizationPolicy, i: int) -> str:
    return f"ns[{p.meta.namespace}]-policy[{p.meta.name}]-rule[{i}]"


def policies_of(p: AuthorizationPolicy) -> dict[str, rbac.Policy]:
    if not p.rules:
        return {policy_name(p, 0): MATCH_NEVER}
    return {policy_name(p, i): rule_policy(r) for i, r in enumerate(p.rules)}


_ACTIONS = (("AUDIT", rbac.RbacAction.LOG), ("DENY", rbac.RbacAction.DENY), ("ALLOW", rbac.RbacAction.ALLOW))
DENY_SHADOW_PREFIX = "istio_dry_run_deny_"
TCP_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."  # istiod RBACTCPFilterStatPrefix


def _shadow_prefix(shadow: rbac.Rbac | None) -> str:
    """istiod shadowRuleStatPrefix: by the shadow rules' action (no shadow rules reads as ALLOW)."""
    action = shadow.action if shadow is not None else rbac.RbacAction.ALLOW
    return {rbac.RbacAction.ALLOW: SHADOW_PREFIX, rbac.RbacAction.DENY: DENY_SHADOW_PREFIX}.get(action, "")


# ---- TCP: HTTP-only fields (istiod Model.Generate(forTCP)) ---------------------------------------------

_HTTP_ONLY_CONDITIONS = ("request.headers", "request.auth.")


def http_only_fields(rule: AuthzRule) -> list[str]:
    """The fields of a rule that only HTTP can evaluate (they make no sense on a TCP filter chain)."""
    found: list[str] = []
    for op in rule.operations:
        for name in ("hosts", "not_hosts", "methods", "not_methods", "paths", "not_paths"):
            if getattr(op, name):
                found.append(_camel(name))
    for src in rule.sources:
        for name in ("request_principals", "not_request_principals"):
            if getattr(src, name):
                found.append(_camel(name))
    found += [f"when {c.key}" for c in rule.conditions if c.key.startswith(_HTTP_ONLY_CONDITIONS)]
    return list(dict.fromkeys(found))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def tcp_rule(rule: AuthzRule, action: str) -> AuthzRule | None:
    """istiod: an ALLOW rule using HTTP-only fields is dropped (a narrower allow); a DENY/AUDIT rule keeps
    its other fields (a wider deny)."""
    if not http_only_fields(rule):
        return rule
    if action == "ALLOW":
        return None
    return AuthzRule(
        sources=tuple(replace(s, request_principals=(), not_request_principals=()) for s in rule.sources),
        operations=tuple(
            replace(o, hosts=(), not_hosts=(), methods=(), not_methods=(), paths=(), not_paths=())
            for o in rule.operations
        ),
        conditions=tuple(c for c in rule.conditions if not c.key.startswith(_HTTP_ONLY_CONDITIONS)),
    )


def policies_for_tcp(p: AuthorizationPolicy) -> dict[str, rbac.Policy]:
    if not p.rules:
        return {policy_name(p, 0): MATCH_NEVER}
    out: dict[str, rbac.Policy] = {}
    for i, r in enumerate(p.rules):
        kept = tcp_rule(r, p.action)
        if kept is not None:
            out[policy_name(p, i)] = rule_policy(kept)
    return out


def _rule_sets(
    policies: list[AuthorizationPolicy], for_tcp: bool
) -> list[tuple[rbac.Rbac | None, rbac.Rbac | None]]:
    """(enforced rules, shadow rules) per action present, in istiod's order (AUDIT, DENY, ALLOW).
    Policies annotated istio.io/dry-run: "true" only go to the shadow rules (evaluated, counted, not
    enforced)."""
    out: list[tuple[rbac.Rbac | None, rbac.Rbac | None]] = []
    generate = policies_for_tcp if for_tcp else policies_of
    for action, envoy_action in _ACTIONS:
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        enforced = [p for p in chosen if not p.dry_run]
        shadow = [p for p in chosen if p.dry_run]
        sets: list[rbac.Rbac | None] = []
        for group in (enforced, shadow):
            merged: dict[str, rbac.Policy] = {}
            for p in group:
                merged.update(generate(p))
            sets.append(rbac.Rbac(action=envoy_action, policies=merged) if group else None)
        out.append((sets[0], sets[1]))
    return out


def rbac_configs(policies: list[AuthorizationPolicy]) -> list[http_rbac.Rbac]:
    """One HTTP RBAC config per action present, in istiod's order (AUDIT, DENY, ALLOW)."""
    return [
        http_rbac.Rbac(rules=rules, shadow_rules=shadow, shadow_rules_stat_prefix=_shadow_prefix(shadow))
        for rules, shadow in _rule_sets(policies, for_tcp=False)
    ]


def tcp_rbac_configs(policies: list[AuthorizationPolicy]) -> list[net_rbac.Rbac]:
    """The same for a TCP filter chain (envoy.filters.network.rbac), HTTP-only fields removed."""
    return [
        net_rbac.Rbac(
            rules=rules,
            shadow_rules=shadow,
            stat_prefix=TCP_STAT_PREFIX,
            shadow_rules_stat_prefix=_shadow_prefix(shadow),
        )
        for rules, shadow in _rule_sets(policies, for_tcp=True)
    ]


def applicable(
    policies: SecurityPolicies, namespace: str, labels: Labels | dict[str, str]
) -> list[AuthorizationPolicy]:
    return [p for p in policies.authz if selects(p.selector, p.meta.namespace, namespace, labels)]


def rbac_http_filters(
    policies: SecurityPolicies, namespace: str, labels: Labels | dict[str, str]
) -> list[hcm.HttpFilter]:
    return [
        hcm.HttpFilter(name=RBAC_FILTER, typed_config=AnyMsg.pack(cfg))
        for cfg in rbac_configs(applicable(policies, namespace, labels))
    ]


def rbac_network_filters(
    policies: SecurityPolicies, namespace: str, labels: Labels | dict[str, str]
) -> list[lis.Filter]:
    """Network RBAC filters for a TCP filter chain (placed before tcp_proxy)."""
    return [
        lis.Filter(name=TCP_RBAC_FILTER, typed_config=AnyMsg.pack(cfg))
        for cfg in tcp_rbac_configs(applicable(policies, namespace, labels))
    ]


def tcp_warnings(policies: list[AuthorizationPolicy]) -> list[Diagnostic]:
    """One warning per rule that a TCP filter chain cannot honour as written."""
    out: list[Diagnostic] = []
    for p in policies:
        for i, r in enumerate(p.rules):
            fields = http_only_fields(r)
            if not fields:
                continue
            effect = "dropped (it allows nothing on TCP)" if p.action == "ALLOW" else "applied without them"
            msg = (
                f"{p.meta.ref} applies to a TCP filter chain: rules[{i}] uses HTTP-only fields "
                f"({', '.join(fields)}); the rule is {effect}, as istiod does"
            )
            out.append(Diagnostic(p.meta.location, f"spec.rules[{i}]", msg, Severity.WARNING, "tcp-rbac"))
    return out
