"""One HTTPRoute rule -> VirtualService http routes (xds.model), as istiod's convertHTTPRoute does, plus the
precedence key the spec orders them by across every route of a hostname.

Each match becomes its own route (precedence is per match). PathPrefix keeps the spec's segment semantics
with two Envoy matches: exact `/foo` and prefix `/foo/` (so `/foobar` does not match); a ReplacePrefixMatch
rewrite or redirect is computed for each of the two. Weights stay relative integers; the share of invalid
backends answers 500, and when no backend can take traffic the whole rule does, as the spec says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from xds.gatewayapi import objects
from xds.gatewayapi.invalid import INVALID_GRPC_BACKEND, INVALID_HTTP_BACKEND
from xds.gatewayapi.kinds import GROUP, GRPC_ROUTE
from xds.model.resources import (
    Destination,
    HTTPMatch,
    HTTPRoute,
    Retry,
    RouteDestination,
    Service,
    StringMatch,
)
from xds.model.traffic import DirectResponse, HeaderOps, Headers, Mirror, Percent, Redirect, RegexRewrite

DOMAIN_SUFFIX = "svc.cluster.local"
ISTIO_GROUP = "networking.istio.io"  # backendRef group/kind Hostname: a registry host as written (istiod)
DEFAULT_ATTEMPTS = 2  # the mesh default retry policy's attempts (xds.translate.route)
_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}
SortKey = tuple[object, ...]


@dataclass(frozen=True)
class RefError:
    """An unresolved reference of a rule: status ResolvedRefs False with this reason."""

    reason: str  # BackendNotFound | InvalidKind | RefNotPermitted
    message: str
    field: str = ""  # where in the HTTPRoute (diagnostics)


@dataclass
class RuleOutcome:
    routes: list[tuple[SortKey, HTTPRoute]] = field(default_factory=list)
    dropped: str = ""  # why the rule is not served (status UnsupportedValue); "" = served
    ref_errors: list[RefError] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)  # served, but not exactly as written


def precedence(route: objects.HTTPRoute, rule: objects.Rule, match: objects.Match, part: int) -> SortKey:
    """The spec's order (httproute_types.go "Precedence"): Exact path, longest prefix, method, most headers,
    most query params; ties: oldest route, then namespace/name, then rule and match order. Regular
    expressions come after prefixes (implementation-specific: istiod's order)."""
    path = match.path
    length = len(path.value.rstrip("/") or "/") if path.kind == "PathPrefix" else len(path.value)
    return (
        -_RANK[path.kind],
        -length,
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query_params),
        route.meta.created,
        route.meta.ref,
        rule.index,
        match.index,
        part,
    )


def _string(kind: str, value: str) -> StringMatch:
    return StringMatch("regex" if kind == "RegularExpression" else "exact", value)


def _paths(path: objects.PathMatch) -> list[StringMatch]:
    """The Envoy path matches of one Gateway API path match (PathPrefix: element-wise)."""
    if path.kind == "Exact":
        return [StringMatch("exact", path.value)]
    if path.kind == "RegularExpression":
        return [StringMatch("regex", path.value)]
    prefix = path.value.rstrip("/")
    if not prefix:
        return [StringMatch("prefix", "/")]
    return [StringMatch("exact", prefix), StringMatch("prefix", prefix + "/")]


def replaced_prefix(replacement: str, matched: StringMatch) -> str:
    """What the matched part of the path becomes (ReplacePrefixMatch): the whole path for the exact half,
    the prefix up to and with its `/` for the prefix half."""
    base = replacement.rstrip("/")
    if matched.kind == "exact":
        return base or "/"
    return base + "/"


def header_ops(found: objects.HeaderFilter | None) -> HeaderOps:
    if found is None:
        return HeaderOps()
    return HeaderOps(set=found.set, add=found.add, remove=found.remove)


def headers(request: objects.HeaderFilter | None, response: objects.HeaderFilter | None) -> Headers | None:
    out = Headers(header_ops(request), header_ops(response))
    return out if out else None


class Resolver:
    """backendRef -> registry Destination, or why not (the spec's ResolvedRefs reasons). A reference to a
    Service of another namespace needs a ReferenceGrant in that namespace permitting it."""

    def __init__(self, services: dict[str, Service], grants: Iterable[objects.ReferenceGrant] = ()) -> None:
        self.services = services
        self.grants = tuple(grants)

    def permitted(self, kind: str, namespace: str, ref: objects.BackendRef, target: str) -> bool:
        """A grant in the target namespace lets `kind` objects of `namespace` refer to the Service."""
        for grant in self.grants:
            if grant.meta.namespace != target:
                continue
            if (GROUP, kind, namespace) not in grant.sources:
                continue
            if any(t == ("", "Service", name) for name in ("", ref.name) for t in grant.targets):
                return True
        return False

    def destination(
        self, ref: objects.BackendRef, namespace: str, kind: str = "HTTPRoute"
    ) -> Destination | RefError:
        if ref.group == "" and ref.kind == "Service":
            target = ref.namespace or namespace
            if target != namespace and not self.permitted(kind, namespace, ref, target):
                msg = f"backendRef {ref.name}/{target} not accessible to a {kind} in namespace {namespace!r}"
                return RefError("RefNotPermitted", f"{msg} (missing a ReferenceGrant?)")
            host = f"{ref.name}.{target}.{DOMAIN_SUFFIX}"
        elif ref.group == ISTIO_GROUP and ref.kind == "Hostname":
            if ref.namespace:
                return RefError("InvalidKind", "namespace may not be set with Hostname type")
            host = ref.name
        else:
            found = f"group {ref.group!r} kind {ref.kind!r}"
            return RefError("InvalidKind", f"referencing unsupported backendRef: {found}")
        if host not in self.services:
            return RefError("BackendNotFound", f"backend({host}) not found")
        return Destination(host, "", ref.port)


def destinations(
    rule: objects.Rule | objects.GRPCRule | objects.L4Rule,
    namespace: str,
    resolver: Resolver,
    outcome: RuleOutcome,
    kind: str = "HTTPRoute",
) -> tuple[RouteDestination, ...]:
    """The rule's weighted backends (unresolved ones reported in outcome), as model destinations. Weights
    stay the spec's relative integers (Envoy takes them as they are). The share of unresolved backends goes
    to a cluster-less target answering 500 (gRPC: UNAVAILABLE), as the spec says; a TCPRoute/TLSRoute gives
    it to the others. No resolved backend: () (the caller answers the whole rule)."""
    found: list[tuple[RouteDestination, int]] = []
    invalid = 0
    for j, ref in enumerate(rule.backend_refs):
        if ref.weight == 0:  # never sent traffic: not resolved either (istiod)
            continue
        dest = resolver.destination(ref, namespace, kind)
        if isinstance(dest, RefError):
            outcome.ref_errors.append(replace(dest, field=f"spec.rules[{rule.index}].backendRefs[{j}]"))
            invalid += ref.weight
            continue
        unsupported = [f.type for f in ref.filters if f.type not in _BACKEND_FILTERS]
        if unsupported:
            outcome.dropped = f"filter {unsupported[0]} on a backendRef is not supported yet"
        request = next((f.request_headers for f in ref.filters if f.request_headers), None)
        response = next((f.response_headers for f in ref.filters if f.response_headers), None)
        found.append((RouteDestination(dest, None, headers(request, response)), ref.weight))
    if not found:
        return ()
    sink = _INVALID_SINKS.get(kind)
    if invalid and sink is None:
        outcome.approximations.append("the share of its unresolved backends goes to the others")
    elif invalid and sink is not None:
        found.append((RouteDestination(Destination(sink, "", None)), invalid))
    if len(found) == 1:
        return (found[0][0],)
    return tuple(replace(d, weight=w) for d, w in found)


_INVALID_SINKS = {"HTTPRoute": INVALID_HTTP_BACKEND, GRPC_ROUTE: INVALID_GRPC_BACKEND}


_BACKEND_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")
_UNSUPPORTED_FILTERS = {
    "CORS": "the CORS filter is not supported yet",
    "ExtensionRef": "ExtensionRef filters are not supported",
    "ExternalAuth": "the ExternalAuth filter is not supported yet",
}


def _redirect(f: objects.Filter) -> Redirect:
    """No port: the scheme's well-known port when a scheme is set (Envoy's default), else the listener's."""
    return Redirect(
        uri=f.path.value if f.path is not None and f.path.kind == "ReplaceFullPath" else "",
        authority=f.redirect_hostname,
        scheme=f.redirect_scheme,
        port=f.redirect_port,
        port_from_request=f.redirect_port is None and not f.redirect_scheme,
        code=f.redirect_status,
    )


def _timeouts(rule: objects.Rule) -> tuple[timedelta | None, Retry | None]:
    """request -> the route timeout; backendRequest -> the per-try timeout of the default retries (and the
    route timeout when request is unset); a zero duration disables the timeout."""
    request, backend = rule.request_timeout, rule.backend_request_timeout
    if not backend:
        return request, None
    return (request if request is not None else backend), Retry(DEFAULT_ATTEMPTS, per_try_timeout=backend)


def convert_rule(route: objects.HTTPRoute, rule: objects.Rule, resolver: Resolver) -> RuleOutcome:
    ns = route.meta.namespace
    outcome = RuleOutcome()
    for f in rule.filters:
        if f.type in _UNSUPPORTED_FILTERS:
            outcome.dropped = _UNSUPPORTED_FILTERS[f.type]
    request = next((f.request_headers for f in rule.filters if f.type == "RequestHeaderModifier"), None)
    response = next((f.response_headers for f in rule.filters if f.type == "ResponseHeaderModifier"), None)
    redirect_filter = next((f for f in rule.filters if f.type == "RequestRedirect"), None)
    rewrite = next((f for f in rule.filters if f.type == "URLRewrite"), None)
    mirrors = []
    for f in rule.filters:
        if f.type != "RequestMirror" or f.mirror is None:
            continue
        target = resolver.destination(f.mirror, ns)
        where = f"spec.rules[{rule.index}].filters[{f.index}].requestMirror"
        if isinstance(target, RefError):  # the spec: an unresolved mirror is dropped (ResolvedRefs False)
            outcome.ref_errors.append(replace(target, field=f"{where}.backendRef"))
            continue
        mirrors.append(Mirror(where, target, Percent(f.mirror_per_million, per_million=True)))
    found = destinations(rule, ns, resolver, outcome)
    timeout, retries = _timeouts(rule)
    base = HTTPRoute(
        index=0,
        name=rule.name or f"{ns}.{route.meta.name}.{rule.index}",
        route=found if redirect_filter is None else (),
        timeout=timeout,
        retries=retries,
        mirrors=tuple(mirrors) if redirect_filter is None else (),
        headers=headers(request, response),
        rewrite_authority=(rewrite.rewrite_hostname or None) if rewrite is not None else None,
        redirect=_redirect(redirect_filter) if redirect_filter is not None else None,
    )
    if redirect_filter is None and not found:  # no backend can take traffic: the spec's 500
        base = replace(base, direct_response=DirectResponse(500), mirrors=())
    changer = redirect_filter or rewrite
    path_change = changer.path if changer is not None else None
    for match in rule.matches:
        for part, uri in enumerate(_paths(match.path)):
            http = replace(base, matches=(_http_match(match, uri),))
            http = _with_path_change(http, path_change, uri, redirect_filter is not None)
            outcome.routes.append((precedence(route, rule, match, part), http))
    return outcome


def _http_match(match: objects.Match, uri: StringMatch) -> HTTPMatch:
    return HTTPMatch(
        uri=uri,
        method=StringMatch("exact", match.method) if match.method else None,
        headers=tuple((h.name, _string(h.kind, h.value)) for h in match.headers),
        query_params=tuple((q.name, _string(q.kind, q.value)) for q in match.query_params),
    )


def _with_path_change(
    http: HTTPRoute, change: objects.PathModifier | None, uri: StringMatch, is_redirect: bool
) -> HTTPRoute:
    if change is None:
        return http
    if change.kind == "ReplaceFullPath":
        if is_redirect:
            return http  # Redirect.uri was set from it
        return replace(http, regex_rewrite=RegexRewrite("/.*", change.value))
    prefix = replaced_prefix(change.value, uri)
    if is_redirect and http.redirect is not None:
        return replace(http, redirect=replace(http.redirect, prefix=prefix))
    return replace(http, rewrite_uri=prefix)


def for_listener(http: HTTPRoute, port: int, scheme: str) -> HTTPRoute:
    """The route as served on one listener port: its matches carry the port (the generated VirtualService is
    bound to every port of its Gateway); a redirect without scheme keeps the listener's (`scheme`: http, or
    https for an HTTPS listener), so that scheme's default port is not written into Location."""
    matches = tuple(replace(m, port=port) for m in http.matches)
    redirect = http.redirect
    if redirect is not None and not redirect.scheme:
        redirect = replace(redirect, scheme=scheme)
    return replace(http, matches=matches, redirect=redirect)
