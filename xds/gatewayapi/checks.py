"""What the Gateway API CRDs require beyond field types: required fields, list limits and the CEL rules of the
standard channel (gateway-api apis/v1 XValidation markers). A document failing one would be refused by the
API server, so it is refused here, with the field and the CRD's own message. Runs on a type-checked spec."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from xds.gatewayapi.schema import FILTER_FIELDS
from xds.model.regex import regex_problem
from xds.model.schema import Report

_PATH_CHARS = "-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._~!$&'()*+,;=:@%"


def check_spec(kind: str, spec: dict[str, Any], report: Report) -> None:
    def error(path: str, message: str, code: str = "invalid") -> None:
        report("error", path, message, code)

    checks = {
        "GatewayClass": _gateway_class,
        "Gateway": _gateway,
        "HTTPRoute": _http_route,
        "GRPCRoute": _grpc_route,
        "ReferenceGrant": _reference_grant,
        "TLSRoute": _l4_route,
        "TCPRoute": _l4_route,
        "BackendTLSPolicy": _backend_tls_policy,
    }
    checks[kind](spec, error)


Error = Callable[..., None]


def _required(value: Any, path: str, error: Error) -> bool:
    if value in (None, "", [], {}):
        error(path, "required field is missing", "required")
        return False
    return True


def _at_most(items: list[Any], limit: int, path: str, error: Error) -> None:
    if len(items) > limit:
        error(path, f"{len(items)} items: at most {limit} allowed", "too-many")


def _gateway_class(spec: dict[str, Any], error: Error) -> None:
    _required(spec.get("controllerName"), "spec.controllerName", error)


def _gateway(spec: dict[str, Any], error: Error) -> None:
    _required(spec.get("gatewayClassName"), "spec.gatewayClassName", error)
    listeners: list[dict[str, Any]] = spec.get("listeners") or []
    if not _required(listeners, "spec.listeners", error):
        return
    _at_most(listeners, 64, "spec.listeners", error)
    names: set[str] = set()
    combos: set[tuple[Any, ...]] = set()
    for i, listener in enumerate(listeners):
        at = f"spec.listeners[{i}]"
        for name in ("name", "port", "protocol"):
            _required(listener.get(name), f"{at}.{name}", error)
        protocol, tls = listener.get("protocol"), listener.get("tls")
        if listener.get("name") in names:
            error(f"{at}.name", "Listener name must be unique within the Gateway", "duplicate")
        names.add(listener.get("name") or "")
        combo = (listener.get("port"), protocol, listener.get("hostname") or "")
        if combo in combos:
            msg = "Combination of port, protocol and hostname must be unique for each listener"
            error(at, msg, "duplicate")
        combos.add(combo)
        if protocol in ("HTTP", "TCP", "UDP") and tls is not None:
            error(f"{at}.tls", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
        if protocol == "HTTPS" and tls is not None and tls.get("mode") not in (None, "", "Terminate"):
            error(f"{at}.tls.mode", "tls mode must be Terminate for protocol HTTPS")
        if protocol == "TLS" and not (tls or {}).get("mode"):
            error(f"{at}.tls.mode", "tls mode must be set for protocol TLS")
        mode = (tls or {}).get("mode") or "Terminate"  # the CRD's default
        terminates = protocol in ("HTTPS", "TLS") and mode == "Terminate"  # else refused above
        if tls is not None and terminates and not (tls.get("certificateRefs") or tls.get("options")):
            error(f"{at}.tls", "certificateRefs or options must be specified when mode is Terminate")
        _at_most((tls or {}).get("certificateRefs") or [], 64, f"{at}.tls.certificateRefs", error)
        for j, ref in enumerate((tls or {}).get("certificateRefs") or []):
            _required(ref.get("name"), f"{at}.tls.certificateRefs[{j}].name", error)
        if protocol in ("TCP", "UDP") and listener.get("hostname"):
            error(f"{at}.hostname", "hostname must not be specified for protocols ['TCP', 'UDP']")
        kinds = ((listener.get("allowedRoutes") or {}).get("kinds")) or []
        _at_most(kinds, 8, f"{at}.allowedRoutes.kinds", error)
        for j, k in enumerate(kinds):
            _required(k.get("kind"), f"{at}.allowedRoutes.kinds[{j}].kind", error)
        namespaces = (listener.get("allowedRoutes") or {}).get("namespaces") or {}
        if namespaces.get("selector") is not None:
            _selector(namespaces["selector"], f"{at}.allowedRoutes.namespaces.selector", error)


def _selector(selector: dict[str, Any], at: str, error: Error) -> None:
    """metav1.LabelSelector validation: In/NotIn need values, Exists/DoesNotExist take none."""
    for k, req in enumerate(selector.get("matchExpressions") or []):
        where = f"{at}.matchExpressions[{k}]"
        _required(req.get("key"), f"{where}.key", error)
        if not _required(req.get("operator"), f"{where}.operator", error):
            continue
        values = req.get("values") or []
        if req["operator"] in ("In", "NotIn") and not values:
            error(f"{where}.values", f"must be specified when `operator` is '{req['operator']}'", "required")
        if req["operator"] in ("Exists", "DoesNotExist") and values:
            error(f"{where}.values", f"may not be specified when `operator` is '{req['operator']}'")


def _http_route(spec: dict[str, Any], error: Error) -> None:
    for i, rule in enumerate(_route_common(spec, error)):
        _rule(rule, f"spec.rules[{i}]", error)


def _route_common(spec: dict[str, Any], error: Error) -> list[dict[str, Any]]:
    """What HTTPRoute and GRPCRoute share (CommonRouteSpec, hostnames, rule limits); the rules."""
    parents: list[dict[str, Any]] = spec.get("parentRefs") or []
    _at_most(parents, 32, "spec.parentRefs", error)
    _at_most(spec.get("hostnames") or [], 16, "spec.hostnames", error)
    for i, ref in enumerate(parents):
        _required(ref.get("name"), f"spec.parentRefs[{i}].name", error)
    _parent_sections(parents, error)
    rules: list[dict[str, Any]] = spec.get("rules") or []
    _at_most(rules, 16, "spec.rules", error)
    total = sum(len(r.get("matches") or []) for r in rules)
    if total > 128:
        msg = "the total number of matches across all rules in a route must be less than 128"
        error("spec.rules", msg, "too-many")
    return rules


_GRPC_SERVICE = re.compile(r"(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*")
_GRPC_METHOD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def _grpc_route(spec: dict[str, Any], error: Error) -> None:
    for i, rule in enumerate(_route_common(spec, error)):
        at = f"spec.rules[{i}]"
        matches: list[dict[str, Any]] = rule.get("matches") or []
        _at_most(matches, 64, f"{at}.matches", error)
        for j, match in enumerate(matches):
            _grpc_match(match, f"{at}.matches[{j}]", error)
        filters: list[dict[str, Any]] = rule.get("filters") or []
        backends: list[dict[str, Any]] = rule.get("backendRefs") or []
        _at_most(filters, 16, f"{at}.filters", error)
        _at_most(backends, 16, f"{at}.backendRefs", error)
        _filters(filters, [], f"{at}.filters", error)
        for j, backend in enumerate(backends):
            where = f"{at}.backendRefs[{j}]"
            _backend_object(backend, where, error)
            _filters(backend.get("filters") or [], [], f"{where}.filters", error)


def _grpc_match(match: dict[str, Any], at: str, error: Error) -> None:
    method = match.get("method")
    if method is not None:
        where = f"{at}.method"
        if not method.get("service") and not method.get("method"):
            error(where, "One or both of 'service' or 'method' must be specified", "required")
        if (method.get("type") or "Exact") == "Exact":
            service, name = method.get("service"), method.get("method")
            if service and not _GRPC_SERVICE.fullmatch(service):
                pattern = _GRPC_SERVICE.pattern
                error(
                    f"{where}.service", f"service must only contain valid characters (matching ^{pattern}$)"
                )
            if name and not _GRPC_METHOD.fullmatch(name):
                error(
                    f"{where}.method",
                    "method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)",
                )
        else:
            for part in ("service", "method"):
                problem = regex_problem(method[part]) if method.get(part) else None
                if problem is not None:
                    error(f"{where}.{part}", problem, "bad-regex")
    _value_matches(match, "headers", at, error)


def _reference_grant(spec: dict[str, Any], error: Error) -> None:
    for part, keys in (("from", ("group", "kind", "namespace")), ("to", ("group", "kind"))):
        items: list[dict[str, Any]] = spec.get(part) or []
        if not _required(items, f"spec.{part}", error):
            continue
        _at_most(items, 16, f"spec.{part}", error)
        for i, item in enumerate(items):
            for key in keys:
                if item.get(key) is None or (key != "group" and not item.get(key)):
                    error(f"spec.{part}[{i}].{key}", "required field is missing", "required")


def _l4_route(spec: dict[str, Any], error: Error) -> None:
    """TLSRoute / TCPRoute: at least one rule (v1 allows one, v1alpha2 16), each with 1-16 backendRefs."""
    rules = _route_common(spec, error)
    _required(rules, "spec.rules", error)
    for i, rule in enumerate(rules):
        backends: list[dict[str, Any]] = rule.get("backendRefs") or []
        if _required(backends, f"spec.rules[{i}].backendRefs", error):
            _at_most(backends, 16, f"spec.rules[{i}].backendRefs", error)
        for j, ref in enumerate(backends):
            _backend_object(ref, f"spec.rules[{i}].backendRefs[{j}]", error)


def _backend_tls_policy(spec: dict[str, Any], error: Error) -> None:
    targets: list[dict[str, Any]] = spec.get("targetRefs") or []
    if _required(targets, "spec.targetRefs", error):
        _at_most(targets, 16, "spec.targetRefs", error)
    for i, ref in enumerate(targets):
        for key in ("kind", "name"):
            _required(ref.get(key), f"spec.targetRefs[{i}].{key}", error)
    validation: dict[str, Any] = spec.get("validation") or {}
    if not _required(validation, "spec.validation", error):
        return
    _required(validation.get("hostname"), "spec.validation.hostname", error)
    refs, known = validation.get("caCertificateRefs") or [], validation.get("wellKnownCACertificates") or ""
    _at_most(refs, 8, "spec.validation.caCertificateRefs", error)
    if refs and known:
        error("spec.validation", "must not contain both CACertificateRefs and WellKnownCACertificates")
    if not refs and not known:
        error("spec.validation", "must specify either CACertificateRefs or WellKnownCACertificates")
    sans: list[dict[str, Any]] = validation.get("subjectAltNames") or []
    _at_most(sans, 5, "spec.validation.subjectAltNames", error)
    for i, san in enumerate(sans):
        kind, at = san.get("type"), f"spec.validation.subjectAltNames[{i}]"
        if not _required(kind, f"{at}.type", error):
            continue
        for name, key in (("Hostname", "hostname"), ("URI", "uri")):
            if kind == name and not san.get(key):
                error(at, f"SubjectAltName element must contain {name}, if Type is set to {name}")
            if kind != name and san.get(key):
                error(at, f"SubjectAltName element must not contain {name}, if Type is not set to {name}")


def _parent_key(ref: dict[str, Any]) -> tuple[str, str, str, str]:
    group = ref.get("group")
    group = "gateway.networking.k8s.io" if group is None else group
    return (group, ref.get("kind") or "Gateway", ref.get("namespace") or "", ref.get("name") or "")


def _parent_sections(parents: list[dict[str, Any]], error: Error) -> None:
    """Two references to one parent must each name a sectionName, and different ones."""
    seen: dict[tuple[str, str, str, str], list[str]] = {}
    for ref in parents:
        seen.setdefault(_parent_key(ref), []).append(ref.get("sectionName") or "")
    for key, sections in seen.items():
        if len(sections) < 2:
            continue
        same = f"when parentRefs includes 2 or more references to the same parent ({key[2] or '.'}/{key[3]})"
        if "" in sections:
            error("spec.parentRefs", f"sectionName must be specified {same}")
        elif len(set(sections)) != len(sections):
            error("spec.parentRefs", f"sectionName must be unique {same}")


def _rule(rule: dict[str, Any], at: str, error: Error) -> None:
    matches: list[dict[str, Any]] = rule.get("matches") or []
    _at_most(matches, 64, f"{at}.matches", error)
    for j, match in enumerate(matches):
        _match(match, f"{at}.matches[{j}]", error)
    filters: list[dict[str, Any]] = rule.get("filters") or []
    backends: list[dict[str, Any]] = rule.get("backendRefs") or []
    _at_most(filters, 16, f"{at}.filters", error)
    _at_most(backends, 16, f"{at}.backendRefs", error)
    _filters(filters, matches, f"{at}.filters", error)
    types = [f.get("type") for f in filters]
    if "RequestRedirect" in types and backends:
        error(f"{at}.filters", "RequestRedirect filter must not be used together with backendRefs")
    for j, backend in enumerate(backends):
        where = f"{at}.backendRefs[{j}]"
        _backend_object(backend, where, error)
        _filters(backend.get("filters") or [], matches, f"{where}.filters", error)
    timeouts = rule.get("timeouts") or {}
    request, backend_request = _seconds(timeouts.get("request")), _seconds(timeouts.get("backendRequest"))
    if request and backend_request is not None and backend_request > request:
        error(f"{at}.timeouts", "backendRequest timeout cannot be longer than request timeout")


def _match(match: dict[str, Any], at: str, error: Error) -> None:
    path = match.get("path")
    if path is not None:
        kind, value = path.get("type") or "PathPrefix", path.get("value")
        value = "/" if value is None else value
        if kind == "RegularExpression":
            problem = regex_problem(value)
            if problem is not None:
                error(f"{at}.path.value", problem, "bad-regex")
        else:
            problem = _path_problem(value)
            if problem is not None:
                error(f"{at}.path.value", f"{problem} when type one of ['Exact', 'PathPrefix']")
    for part in ("headers", "queryParams"):
        _value_matches(match, part, at, error)


def _value_matches(match: dict[str, Any], part: str, at: str, error: Error) -> None:
    names: set[str] = set()
    for k, item in enumerate(match.get(part) or []):
        where = f"{at}.{part}[{k}]"
        if not _required(item.get("name"), f"{where}.name", error):
            continue
        _required(item.get("value"), f"{where}.value", error)
        if item["name"] in names:  # a list-map keyed by name: the API server refuses a repeat
            error(f"{where}.name", f"duplicate entry {item['name']!r}", "duplicate")
        names.add(item["name"])
        if item.get("type") == "RegularExpression" and isinstance(item.get("value"), str):
            problem = regex_problem(item["value"])
            if problem is not None:
                error(f"{where}.value", problem, "bad-regex")


def _path_problem(value: str) -> str | None:
    if not value.startswith("/"):
        return "value must be an absolute path and start with '/'"
    for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
        if bad in value:
            return f"must not contain {bad!r}"
    for bad in ("/..", "/."):
        if value.endswith(bad):
            return f"must not end with {bad!r}"
    if any(c not in _PATH_CHARS for c in value):
        return "must only contain valid path characters"
    return None


def _filters(filters: list[dict[str, Any]], matches: list[dict[str, Any]], at: str, error: Error) -> None:
    types = [f.get("type") for f in filters]
    if "RequestRedirect" in types and "URLRewrite" in types:
        both = "httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite"
        error(at, f"May specify either {both}, but not both")
    for once in ("CORS", "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
        if types.count(once) > 1:
            error(at, f"{once} filter cannot be repeated")
    for j, f in enumerate(filters):
        where, kind = f"{at}[{j}]", f.get("type")
        if not _required(kind, f"{where}.type", error) or not isinstance(kind, str):
            continue
        for other_type, name in FILTER_FIELDS.items():
            if other_type != kind and f.get(name) is not None:
                error(f"{where}.{name}", f"filter.{name} must be nil if the filter.type is not {other_type}")
        settings = f.get(FILTER_FIELDS[kind])
        if settings is None:
            msg = f"filter.{FILTER_FIELDS[kind]} must be specified for {kind} filter.type"
            error(f"{where}.{FILTER_FIELDS[kind]}", msg, "required")
            continue
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            _header_filter(settings, f"{where}.{FILTER_FIELDS[kind]}", error)
        elif kind == "RequestMirror":
            _mirror(settings, f"{where}.requestMirror", error)
        elif kind in ("RequestRedirect", "URLRewrite"):
            _path_modifier(settings.get("path"), matches, f"{where}.{FILTER_FIELDS[kind]}.path", kind, error)


def _header_filter(settings: dict[str, Any], at: str, error: Error) -> None:
    for part in ("set", "add"):
        names: set[str] = set()
        for k, header in enumerate(settings.get(part) or []):
            where = f"{at}.{part}[{k}]"
            if _required(header.get("name"), f"{where}.name", error):
                if header["name"] in names:
                    error(f"{where}.name", f"duplicate entry {header['name']!r}", "duplicate")
                names.add(header["name"])
            _required(header.get("value"), f"{where}.value", error)
    if len(set(settings.get("remove") or [])) != len(settings.get("remove") or []):
        error(f"{at}.remove", "duplicate entries", "duplicate")


def _mirror(settings: dict[str, Any], at: str, error: Error) -> None:
    if settings.get("percent") is not None and settings.get("fraction") is not None:
        error(at, "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter")
    fraction = settings.get("fraction")
    if fraction is not None:
        if fraction.get("numerator") is None:
            error(f"{at}.fraction.numerator", "required field is missing", "required")
        elif fraction["numerator"] > (fraction.get("denominator") or 100):
            error(f"{at}.fraction", "numerator must be less than or equal to denominator")
    backend = settings.get("backendRef")
    if _required(backend, f"{at}.backendRef", error) and isinstance(backend, dict):
        _backend_object(backend, f"{at}.backendRef", error)


def _backend_object(ref: dict[str, Any], at: str, error: Error) -> None:
    if not _required(ref.get("name"), f"{at}.name", error):
        return
    if (ref.get("group") or "") == "" and (ref.get("kind") or "Service") == "Service" and not ref.get("port"):
        error(f"{at}.port", "Must have port for Service reference", "required")


def _path_modifier(
    modifier: dict[str, Any] | None, matches: list[dict[str, Any]], at: str, filter_type: str, error: Error
) -> None:
    if modifier is None:
        return
    kind = modifier.get("type")
    if not _required(kind, f"{at}.type", error):
        return
    for field_type in ("ReplaceFullPath", "ReplacePrefixMatch"):
        name = field_type[0].lower() + field_type[1:]
        if kind == field_type and modifier.get(name) is None:
            error(f"{at}.{name}", f"{name} must be specified when type is set to '{field_type}'", "required")
        if kind != field_type and modifier.get(name) is not None:
            error(f"{at}.{name}", f"type must be '{field_type}' when {name} is set")
    if kind == "ReplacePrefixMatch":
        effective = matches or [{}]  # the CRD defaults: one match, path PathPrefix "/"
        path_type = (effective[0].get("path") or {}).get("type") or "PathPrefix"
        if len(effective) != 1 or path_type != "PathPrefix":
            what = f"When using {filter_type} filter with path.replacePrefixMatch"
            error(at, f"{what}, exactly one PathPrefix match must be specified")


_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _seconds(text: str | None) -> float | None:
    """A GEP-2257 duration (already pattern-checked) in seconds."""
    if text is None:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", text))
