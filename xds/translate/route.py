"""RDS: VirtualService http routes -> Envoy routes, as istiod's route.go does (istio-mapping.md §1).

Virtual hosts are serialized one by one (memoized by their IR inputs) and a RouteConfiguration body is the
concatenation of its header and those vhost bodies, so a one-route change re-serializes one vhost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache

from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts import v3 as previous_hosts
from envoy_data_plane.envoy.type.matcher import v3 as matcher
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.gatewayapi.invalid import INVALID_HTTP_BACKEND
from xds.model.mesh import MeshConfig
from xds.model.resources import (
    DestinationRule,
    HTTPMatch,
    HTTPRoute,
    Retry,
    Service,
    ServicePort,
    TrafficPolicy,
    VirtualService,
)
from xds.model.traffic import ConsistentHash, Destination
from xds.translate.envoy_core import outbound_cluster_name
from xds.translate.matchers import route_match
from xds.translate.pack import compose, encode
from xds.translate.traffic import (
    direct_response,
    hash_policies,
    header_options,
    host_rewrite,
    mirror_policy,
    per_filter_config,
    redirect_action,
)
from xds.validate.checks import is_catch_all

ZERO = timedelta(0)
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
_PREVIOUS_HOSTS = rte.RetryPolicyRetryHostPredicate(
    name="envoy.retry_host_predicates.previous_hosts",
    typed_config=AnyMsg.pack(previous_hosts.PreviousHostsPredicate()),
)


def default_retry_policy() -> rte.RetryPolicy:
    return rte.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=2,
        retriable_status_codes=[503],
        host_selection_retry_max_attempts=5,
        retry_host_predicate=[_PREVIOUS_HOSTS],
    )


DEFAULT_RETRY_BYTES = bytes(default_retry_policy())


def retry_policy(retry: Retry | None) -> rte.RetryPolicy | None:
    """istiod retry.ConvertPolicy: unset -> default policy; attempts 0 -> none; retryOn codes split off."""
    if retry is None:
        return default_retry_policy()
    if retry.attempts <= 0:
        return None
    policy = default_retry_policy()
    policy.num_retries = retry.attempts
    if retry.per_try_timeout is not None:
        policy.per_try_timeout = retry.per_try_timeout
    if retry.retry_on:
        names: list[str] = []
        codes: list[int] = []
        for token in (t.strip() for t in retry.retry_on.split(",")):
            if token.isdigit() and 100 <= int(token) <= 599:
                codes.append(int(token))
            elif token and token not in names:
                names.append(token)
        if codes and "retriable-status-codes" not in names:
            names.append("retriable-status-codes")
        policy.retry_on = ",".join(names)
        policy.retriable_status_codes = codes
    return policy


def destination_port(dest: Destination, config: MeshConfig, listener_port: int) -> int:
    """istiod GetDestinationCluster: destination.port, else the only service port, else the listener's."""
    if dest.port is not None:
        return dest.port
    svc = config.service_by_host.get(dest.host)
    if svc is not None and len(svc.ports) == 1:
        return svc.ports[0].number
    return listener_port


def normalised_weights(route: HTTPRoute) -> list[int]:
    weights = [d.weight for d in route.route]
    if all(w is None for w in weights):
        n = len(weights)
        return [100 // n + (1 if i < 100 % n else 0) for i in range(n)]
    return [w or 0 for w in weights]


def destination_hash(rule: DestinationRule | None, dest: Destination) -> ConsistentHash | None:
    """istiod hashForHTTPDestination: subset portLevelSettings > subset > DR portLevelSettings > DR, each
    looked at for its consistentHash only; port-level settings match the destination's explicit port."""
    if rule is None:
        return None

    def at_port(policy: TrafficPolicy | None) -> ConsistentHash | None:
        found = policy.for_port(dest.port) if policy is not None and dest.port is not None else None
        return found.consistent_hash if found is not None else None

    top = rule.traffic_policy
    subset = rule.subset(dest.subset) if dest.subset else None
    sub = subset.traffic_policy if subset is not None else None
    for candidate in (at_port(sub), sub.consistent_hash if sub is not None else None, at_port(top)):
        if candidate is not None:
            return candidate
    return top.consistent_hash if top is not None else None


def hash_policy_for(
    route: HTTPRoute, config: MeshConfig, listener_port: int
) -> list[rte.RouteActionHashPolicy]:
    """istiod: each destination (weight-0 ones of a weighted route skipped) appends its DestinationRule's
    consistentHash, in order; config.rule_by_host is the DR the proxy's namespace sees."""
    weighted = len(route.route) > 1
    out: list[rte.RouteActionHashPolicy] = []
    for d, w in zip(route.route, normalised_weights(route), strict=True):
        if weighted and w <= 0:
            continue
        dest = d.destination
        out += hash_policies(destination_hash(config.rule_by_host.get(dest.host), dest))
    return out


def needs_full_action(route: HTTPRoute, config: MeshConfig) -> bool:
    """True when the action has parts the byte fast path does not encode (mirrors, hash policy, ...)."""
    if route.mirrors or route.regex_rewrite is not None:
        return True
    if answers_invalid_share(route):
        return True
    if route.headers is not None and host_rewrite(route.headers.request) is not None:
        return True
    if len(route.route) > 1 and any(d.headers for d in route.route):
        return True
    if len(route.route) == 1:
        if route.route[0].headers and host_rewrite(route.route[0].headers.request):
            return True
    for d in route.route:
        rule = config.rule_by_host.get(d.destination.host)
        if rule is not None and _uses_hash(rule):
            return True
    return False


def answers_invalid_share(route: HTTPRoute) -> bool:
    """A Gateway API route whose invalid backends' share goes to a cluster that never exists (500s)."""
    return any(d.destination.host == INVALID_HTTP_BACKEND for d in route.route)


def _uses_hash(rule: DestinationRule) -> bool:
    policies = [rule.traffic_policy] + [s.traffic_policy for s in rule.subsets]
    policies += [p for tp in list(policies) if tp is not None for _, p in tp.port_level]
    return any(p is not None and p.consistent_hash is not None for p in policies)


def route_action(
    route: HTTPRoute, config: MeshConfig, listener_port: int, with_retry: bool = True
) -> rte.RouteAction:
    timeout = route.timeout if route.timeout is not None else ZERO
    action = rte.RouteAction(
        timeout=timeout,
        max_grpc_timeout=timeout,  # istiod still sets the deprecated field (0s when disabled)
        retry_policy=retry_policy(route.retries) if with_retry else None,
        prefix_rewrite=route.rewrite_uri or "",
        host_rewrite_literal=route.rewrite_authority,
    )
    targets = [
        (cluster_for(d.destination, config, listener_port), w, d)
        for d, w in zip(route.route, normalised_weights(route), strict=True)
    ]
    if len(targets) == 1:
        action.cluster = targets[0][0]
    else:
        weights = []
        for name, w, d in targets:
            if w <= 0:
                continue
            cw = rte.WeightedClusterClusterWeight(name=name, weight=w)
            if d.headers:
                cw.request_headers_to_add, cw.request_headers_to_remove = header_options(d.headers.request)
                cw.response_headers_to_add, cw.response_headers_to_remove = header_options(d.headers.response)
                cw.host_rewrite_literal = host_rewrite(d.headers.request)
            weights.append(cw)
        action.weighted_clusters = rte.WeightedCluster(clusters=weights)
    if answers_invalid_share(route):
        action.cluster_not_found_response_code = (
            rte.RouteActionClusterNotFoundResponseCode.INTERNAL_SERVER_ERROR
        )
    if route.regex_rewrite is not None:
        action.prefix_rewrite = ""
        action.regex_rewrite = matcher.RegexMatchAndSubstitute(
            pattern=matcher.RegexMatcher(regex=route.regex_rewrite.pattern),
            substitution=route.regex_rewrite.substitution,
        )
    for ops in (route.headers, route.route[0].headers if len(route.route) == 1 else None):
        host = host_rewrite(ops.request) if ops else None
        if host is not None:
            action.host_rewrite_literal = host
    action.request_mirror_policies = [
        mirror_policy(cluster_for(m.destination, config, listener_port), m.percent) for m in route.mirrors
    ]
    action.hash_policy = hash_policy_for(route, config, listener_port)
    if len(route.route) == 1 and action.hash_policy and action.retry_policy is not None:
        # istiod: no previous_hosts with consistent hash (it only looks at single-destination routes)
        action.retry_policy.retry_host_predicate = []
    return action


def route_extras(route: HTTPRoute, listener_port: int) -> rte.Route:
    """The Route-level parts of an http route: per-filter fault/CORS, header operations, redirect/direct."""
    out = rte.Route(typed_per_filter_config=per_filter_config(route.fault, route.cors))
    ops = [route.headers] + ([route.route[0].headers] if len(route.route) == 1 else [])
    for h in ops:
        if not h:
            continue
        add, remove = header_options(h.request)
        out.request_headers_to_add += add
        out.request_headers_to_remove += remove
        add, remove = header_options(h.response)
        out.response_headers_to_add += add
        out.response_headers_to_remove += remove
    if route.redirect is not None:
        out.redirect = redirect_action(route.redirect, listener_port)
    elif route.direct_response is not None:
        out.direct_response = direct_response(route.direct_response)
    return out


def cluster_for(dest: Destination, config: MeshConfig, listener_port: int) -> str:
    return outbound_cluster_name(destination_port(dest, config, listener_port), dest.subset, dest.host)


@lru_cache(maxsize=1024)
def retry_policy_bytes(retry: Retry | None) -> bytes | None:
    policy = retry_policy(retry)
    return None if policy is None else bytes(policy)


@lru_cache(maxsize=65536)
def _action_base(
    targets: tuple[tuple[str, int], ...], timeout: timedelta, retries: Retry | None, authority: str | None
) -> bytes:
    """Serialized RouteAction minus prefix_rewrite; shared by every route with the same inputs."""
    action = rte.RouteAction(timeout=timeout, max_grpc_timeout=timeout, host_rewrite_literal=authority)
    if len(targets) == 1:
        action.cluster = targets[0][0]
    else:
        action.weighted_clusters = rte.WeightedCluster(
            clusters=[rte.WeightedClusterClusterWeight(name=n, weight=w) for n, w in targets if w > 0]
        )
    retry = retry_policy_bytes(retries)
    return compose(action) if retry is None else compose(action, retry_policy=retry)


def route_action_bytes(route: HTTPRoute, config: MeshConfig, listener_port: int, rewrite: str = "") -> bytes:
    """Equal to bytes(route_action(...)) (with prefix_rewrite replaced by rewrite when given)."""
    if needs_full_action(route, config):
        action = route_action(route, config, listener_port)
        if rewrite:
            action.prefix_rewrite = rewrite
            action.regex_rewrite = None
        return bytes(action)
    targets = tuple(
        (cluster_for(d.destination, config, listener_port), w)
        for d, w in zip(route.route, normalised_weights(route), strict=True)
    )
    timeout = route.timeout if route.timeout is not None else ZERO
    base = _action_base(targets, timeout, route.retries, route.rewrite_authority)
    return base + encode(rte.RouteAction, prefix_rewrite=rewrite or route.rewrite_uri or None)


_ZERO_TIMEOUTS = bytes(rte.RouteAction(timeout=ZERO, max_grpc_timeout=ZERO))


def default_action_bytes(cluster: str, rewrite: str = "") -> bytes:
    return (
        encode(rte.RouteAction, cluster=cluster, prefix_rewrite=rewrite or None)
        + _ZERO_TIMEOUTS
        + encode(rte.RouteAction, retry_policy=DEFAULT_RETRY_BYTES)
    )


def default_action(cluster: str) -> rte.RouteAction:
    return rte.RouteAction(
        cluster=cluster, timeout=ZERO, max_grpc_timeout=ZERO, retry_policy=default_retry_policy()
    )


def default_route(service: Service, port: ServicePort) -> rte.Route:
    """istiod BuildDefaultHTTPOutboundRoute."""
    return rte.Route(
        name="default",
        match=rte.RouteMatch(prefix="/"),
        route=default_action(outbound_cluster_name(port.number, "", service.host)),
        decorator=rte.Decorator(operation=f"{service.host}:{port.number}/*"),
    )


def default_route_bytes(service: Service, port: ServicePort) -> bytes:
    return encode(
        rte.Route,
        name="default",
        match=_PREFIX_ROOT,
        route=default_action_bytes(outbound_cluster_name(port.number, "", service.host)),
        decorator=encode(rte.Decorator, operation=f"{service.host}:{port.number}/*"),
    )


_PREFIX_ROOT = encode(rte.RouteMatch, prefix="/")


def _merge_match(root: HTTPMatch, child: HTTPMatch) -> HTTPMatch:
    """Delegate merge: the delegate's conditions refine the root's (child values win when both are set)."""
    return replace(
        root,
        uri=child.uri or root.uri,
        method=child.method or root.method,
        authority=child.authority or root.authority,
        headers=tuple(sorted(dict(root.headers + child.headers).items())),
        without_headers=tuple(sorted(dict(root.without_headers + child.without_headers).items())),
        query_params=tuple(sorted(dict(root.query_params + child.query_params).items())),
        ignore_uri_case=child.ignore_uri_case or root.ignore_uri_case,
        port=child.port or root.port,
        name=child.name or root.name,
        source_labels=child.source_labels or root.source_labels,
        source_namespace=child.source_namespace or root.source_namespace,
    )


def expand_delegates(vs: VirtualService, config: MeshConfig, depth: int = 0) -> list[HTTPRoute]:
    """The root VS's http list with every delegate entry replaced by the delegate's routes."""
    out: list[HTTPRoute] = []
    for route in vs.http:
        if route.delegate is None:
            out.append(route)
            continue
        child = config.vs_by_ref.get((route.delegate.namespace, route.delegate.name))
        if child is None or depth > 8:  # dangling / cyclic delegates are refused by validation
            continue
        for sub in expand_delegates(child, config, depth + 1):
            if route.matches and sub.matches:
                merged = tuple(_merge_match(r, s) for r in route.matches for s in sub.matches)
            else:
                merged = sub.matches or route.matches
            out.append(replace(sub, matches=merged))
    return out


def delegates_of(vs: VirtualService, config: MeshConfig) -> tuple[VirtualService, ...]:
    """Every VS reachable through delegation (memo inputs: a delegate edit must rebuild the root's vhosts)."""
    seen: list[VirtualService] = []
    stack = [vs]
    while stack:
        cur = stack.pop()
        for r in cur.http:
            if r.delegate is not None:
                child = config.vs_by_ref.get((r.delegate.namespace, r.delegate.name))
                if child is not None and child not in seen and len(seen) < 64:
                    seen.append(child)
                    stack.append(child)
    return tuple(seen)


@dataclass(frozen=True)
class RouteSpec:
    """One Envoy route of a virtual host before serialization: name, match and which http route acts."""

    name: str
    match: HTTPMatch | None
    http: HTTPRoute
    operation: str


def vs_route_specs(vs: VirtualService, port: ServicePort, config: MeshConfig) -> list[RouteSpec]:
    specs: list[RouteSpec] = []
    for route in expand_delegates(vs, config):
        if not route.route and not route.terminal:
            continue  # nothing to do (validation already refused it)
        if len(route.route) == 1:
            first = route.route[0].destination
            operation = f"{first.host}:{destination_port(first, config, port.number)}/*"
        else:
            operation = f"{vs.meta.name}:{port.number}/*"
        matches: list[HTTPMatch | None] = list(route.matches) or [None]
        for m in matches:
            if m is not None and m.port is not None and m.port != port.number:
                continue  # istiod: a match on another port goes to that port's routes only
            name = route.name
            if m is not None and m.name:
                name = f"{route.name}.{m.name}" if route.name else m.name
            specs.append(RouteSpec(name, m, route, operation))
        if is_catch_all(route):
            break  # istiod stops after the first catch-all route
    return specs


def _route_shell(spec: RouteSpec, listener_port: int) -> rte.Route:
    shell = route_extras(spec.http, listener_port)
    shell.name = spec.name
    shell.match = route_match(spec.match)
    shell.decorator = rte.Decorator(operation=spec.operation)
    return shell


def vs_routes(vs: VirtualService, port: ServicePort, config: MeshConfig) -> list[rte.Route]:
    out = []
    for spec in vs_route_specs(vs, port, config):
        shell = _route_shell(spec, port.number)
        if not spec.http.terminal:
            shell.route = route_action(spec.http, config, port.number)
        out.append(shell)
    return out


def vs_routes_bytes(vs: VirtualService, port: ServicePort, config: MeshConfig) -> list[bytes]:
    actions: dict[int, bytes] = {}
    out = []
    for spec in vs_route_specs(vs, port, config):
        if spec.http.terminal:
            out.append(bytes(_route_shell(spec, port.number)))
            continue
        key = id(spec.http)
        if key not in actions:
            actions[key] = route_action_bytes(spec.http, config, port.number)
        out.append(compose(_route_shell(spec, port.number), route=actions[key]))
    return out


def service_domains(service: Service, port: ServicePort, namespace: str, with_bare: bool) -> list[str]:
    """short, name.ns, name.ns.svc, FQDN (each with :port); the short name only for the proxy's namespace."""
    host = service.host
    names = [host]
    suffix = f".{service.namespace}.svc.cluster.local"
    if host.endswith(suffix):
        short = host[: -len(suffix)]
        names = [f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc", host]
        if service.namespace == namespace:
            names.insert(0, short)
    out: list[str] = []
    for n in names:
        if with_bare:
            out.append(n)
        out.append(f"{n}:{port.number}")
    return out


def _vhost_shell(service: Service, port: ServicePort, namespace: str, with_bare: bool) -> rte.VirtualHost:
    return rte.VirtualHost(
        name=f"{service.host}:{port.number}",
        domains=service_domains(service, port, namespace, with_bare),
        include_request_attempt_count=True,
    )


def virtual_host(
    service: Service,
    port: ServicePort,
    vs: VirtualService | None,
    config: MeshConfig,
    namespace: str,
    with_bare: bool,
) -> rte.VirtualHost:
    vhost = _vhost_shell(service, port, namespace, with_bare)
    routes = vs_routes(vs, port, config) if vs is not None else []
    # istiod: a VirtualService that yields no route here (sourceLabels excluded every http route, or it has
    # only tcp/tls routes) leaves the host its default route, not an empty virtual host (404)
    vhost.routes = routes or [default_route(service, port)]
    return vhost


def virtual_host_bytes(
    service: Service,
    port: ServicePort,
    vs: VirtualService | None,
    config: MeshConfig,
    namespace: str,
    with_bare: bool,
) -> bytes:
    routes = vs_routes_bytes(vs, port, config) if vs is not None else []
    routes = routes or [default_route_bytes(service, port)]  # as virtual_host(): no route left, the default
    return encode(
        rte.VirtualHost,
        name=f"{service.host}:{port.number}",
        domains=service_domains(service, port, namespace, with_bare),
        routes=routes,
        include_request_attempt_count=True,
    )


def block_all_vhost() -> rte.VirtualHost:
    """REGISTRY_ONLY: unknown hosts get 502 (istiod buildCatchAllVirtualHost)."""
    return rte.VirtualHost(
        name="block_all",
        domains=["*"],
        routes=[
            rte.Route(
                name="block_all",
                match=rte.RouteMatch(prefix="/"),
                direct_response=rte.DirectResponseAction(status=502),
            )
        ],
        include_request_attempt_count=True,
    )


# ---- VirtualService hosts that are not registry services (e.g. `uk.bookinfo.com` bound to `mesh`) ----------


def _alias_ports(vs: VirtualService, config: MeshConfig) -> list[int]:
    """istiod buildSidecarVirtualHostsForVirtualService: the HTTP ports of the VS's registry hosts; with none,
    the ports its routes send to (Mecha has one outbound listener, not one per port)."""
    ports = {
        p.number
        for h in vs.hosts
        if (svc := config.service_by_host.get(h)) is not None
        for p in svc.ports
        if p.is_http
    }
    if not ports:
        ports = {
            destination_port(rd.destination, config, 80)
            for route in expand_delegates(vs, config)
            for rd in route.route
        }
    return sorted(ports) or [80]


def alias_virtual_hosts(
    config: MeshConfig,
    services: Iterable[Service],
    namespace: str,
    only_port: int | None = None,
    selected: Callable[[VirtualService, str], bool] = lambda _vs, _host: True,
) -> list[rte.VirtualHost]:
    """One virtual host per (non-registry host, port) of the mesh VirtualServices: domains `host` (first port
    only: a domain may appear once) and `host:port`. A host that is already a service's domain is skipped
    (Envoy refuses a domain twice), as is `*` (the catch-all's). only_port: that port's virtual hosts only
    (a Sidecar egress listener's table), `host` among their domains; selected: which (VS, host) to keep."""
    aliases = config.mesh_routes_outside_registry  # computed once per config
    if not aliases:  # the common case: every VirtualService host is a service (no walk over the services)
        return []
    taken = {
        d
        for svc in services
        for p in svc.ports
        if p.is_http
        for d in service_domains(svc, p, namespace, True)
    }
    out: list[rte.VirtualHost] = []
    for host, vs in aliases:
        if host in taken or not selected(vs, host):
            continue
        for i, number in enumerate(_alias_ports(vs, config)):
            if only_port is not None and number != only_port:
                continue
            routes = vs_routes(vs, ServicePort(number=number, protocol="HTTP"), config)
            if not routes:
                continue
            bare = i == 0 or only_port is not None
            domains = [host, f"{host}:{number}"] if bare else [f"{host}:{number}"]
            out.append(
                rte.VirtualHost(
                    name=f"{host}:{number}",
                    domains=domains,
                    routes=routes,
                    include_request_attempt_count=True,
                )
            )
    return out
