"""One GRPCRoute rule -> VirtualService http routes, as istiod's convertGRPCRoute does: a gRPC call is an
HTTP/2 POST to `/<service>/<method>`, so service/method matches become path matches:

- Exact service and method: exact `/<service>/<method>`; service only: prefix `/<service>/`; method only:
  regex `/[^/]+/<method>` (the CRD limits both to identifier characters, nothing to escape);
- RegularExpression: regex `/<service or [^/]+>/<method or [^/]+>` (RE2);
- no method match: every call (prefix `/`).

Precedence (grpcroute_types.go): most characters of service, then of method, then most header matches; ties:
oldest route, namespace/name, rule and match order. Regular expressions come after every Exact match and
before a rule without method match (implementation-specific, as regexes after prefixes for HTTPRoute: the
length of a pattern says nothing of what it matches). Hostname precedence is Envoy's virtual host choice.
A rule without any backend that can take traffic answers 503, which gRPC clients see as UNAVAILABLE (the
status the spec asks for).
"""

from __future__ import annotations

from dataclasses import replace

from xds.gatewayapi import objects
from xds.gatewayapi.kinds import GRPC_ROUTE
from xds.gatewayapi.routes import RefError, Resolver, RuleOutcome, SortKey, destinations, headers
from xds.model.resources import HTTPMatch, HTTPRoute, StringMatch
from xds.model.traffic import DirectResponse, Mirror, Percent

UNAVAILABLE = 503  # mapped to gRPC status UNAVAILABLE by clients (and by Envoy's gRPC local replies)
_ANY = "[^/]+"


def uri(match: objects.GRPCMatch) -> StringMatch:
    if not match.has_method_match:
        return StringMatch("prefix", "/")
    if match.kind == "RegularExpression":
        return StringMatch("regex", f"/{match.service or _ANY}/{match.method or _ANY}")
    if not match.method:
        return StringMatch("prefix", f"/{match.service}/")
    if not match.service:
        return StringMatch("regex", f"/{_ANY}/{match.method}")
    return StringMatch("exact", f"/{match.service}/{match.method}")


def precedence(route: objects.GRPCRoute, rule: objects.GRPCRule, match: objects.GRPCMatch) -> SortKey:
    """Same shape as the HTTPRoute key (routes.precedence): both kinds may share one virtual host list."""
    rank = 2 if not match.has_method_match else (0 if match.kind == "Exact" else 1)
    return (
        rank,
        -len(match.service),
        -len(match.method),
        -len(match.headers),
        0,
        route.meta.created,
        route.meta.ref,
        rule.index,
        match.index,
        0,
    )


def _http_match(match: objects.GRPCMatch) -> HTTPMatch:
    return HTTPMatch(
        uri=uri(match),
        headers=tuple(
            (h.name, StringMatch("regex" if h.kind == "RegularExpression" else "exact", h.value))
            for h in match.headers
        ),
    )


def convert_grpc_rule(route: objects.GRPCRoute, rule: objects.GRPCRule, resolver: Resolver) -> RuleOutcome:
    ns = route.meta.namespace
    outcome = RuleOutcome()
    if any(f.type == "ExtensionRef" for f in rule.filters):
        outcome.dropped = "ExtensionRef filters are not supported"
    request = next((f.request_headers for f in rule.filters if f.type == "RequestHeaderModifier"), None)
    response = next((f.response_headers for f in rule.filters if f.type == "ResponseHeaderModifier"), None)
    mirrors = []
    for f in rule.filters:
        if f.type != "RequestMirror" or f.mirror is None:
            continue
        target = resolver.destination(f.mirror, ns, GRPC_ROUTE)
        where = f"spec.rules[{rule.index}].filters[{f.index}].requestMirror"
        if isinstance(target, RefError):  # an unresolved mirror is dropped (ResolvedRefs False)
            outcome.ref_errors.append(replace(target, field=f"{where}.backendRef"))
            continue
        mirrors.append(Mirror(where, target, Percent(f.mirror_per_million, per_million=True)))
    found = destinations(rule, ns, resolver, outcome, GRPC_ROUTE)
    for d in found:
        service = resolver.services.get(d.destination.host)
        port = next((p for p in service.ports if p.number == d.destination.port), None) if service else None
        if port is not None and not port.is_http2:  # Envoy would speak HTTP/1.1 to a gRPC server
            name = f"{d.destination.host}:{port.number}"
            fix = "protocol GRPC (ServiceEntry), or name grpc-* / appProtocol grpc (Service)"
            note = f"backend {name} is {port.protocol}, not HTTP/2: give the port {fix}"
            outcome.approximations.append(note)
    base = HTTPRoute(
        index=0,
        name=rule.name or f"{ns}.{route.meta.name}.{rule.index}",
        route=found,
        mirrors=tuple(mirrors),
        headers=headers(request, response),
    )
    if not found:
        base = replace(base, direct_response=DirectResponse(UNAVAILABLE), mirrors=())
    for match in rule.matches:
        outcome.routes.append((precedence(route, rule, match), replace(base, matches=(_http_match(match),))))
    return outcome
