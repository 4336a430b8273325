"""Routes of the Dapr HTTP and gRPC listeners: service invocation through the mesh, the rest to the
capability service. App ids are service short names (proxy's namespace) and `name.namespace`."""

from __future__ import annotations

from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.type.matcher import v3 as matcher

from xds.model.mesh import MeshConfig
from xds.model.resources import HTTPRoute, Service, ServicePort
from xds.translate.envoy_core import outbound_cluster_name
from xds.translate.pack import encode
from xds.translate.resiliency import InvokePolicy, invoke_cluster_name
from xds.translate.resiliency import apply as apply_resiliency
from xds.translate.route import (
    ZERO,
    default_action,
    default_action_bytes,
    expand_delegates,
    route_action,
    route_action_bytes,
)
from xds.translate.scoped_routes import invoke_action_bytes
from xds.validate.checks import is_catch_all

APP_ID_HEADER = "dapr-app-id"
API_TOKEN_HEADER = "dapr-api-token"  # DAPR_API_TOKEN from callers; APP_API_TOKEN towards the app
CAPABILITIES_HTTP = "capabilities_http"
CAPABILITIES_GRPC = "capabilities_grpc"


def app_ids(service: Service, namespace: str) -> list[str]:
    suffix = f".{service.namespace}.svc.cluster.local"
    if not service.host.endswith(suffix):
        return [service.host]
    short = service.host[: -len(suffix)]
    ids = [f"{short}.{service.namespace}"]
    if service.namespace == namespace:
        ids.insert(0, short)
    return ids


def http_port(service: Service) -> ServicePort | None:
    return next((p for p in service.ports if p.is_http), None)


def grpc_port(service: Service) -> ServicePort | None:
    return next((p for p in service.ports if p.is_http2), None)


def mesh_route(service: Service, config: MeshConfig) -> HTTPRoute | None:
    """The VS http route whose action invoke requests reuse: the host's first catch-all route."""
    vs = config.mesh_routes_by_host.get(service.host)
    if vs is None:
        return None
    return next((r for r in expand_delegates(vs, config) if r.route and is_catch_all(r)), None)


def mesh_action(
    service: Service, port: ServicePort, config: MeshConfig, rewrite: str = ""
) -> rte.RouteAction:
    chosen = mesh_route(service, config)
    if chosen is not None:
        action = route_action(chosen, config, port.number)
    else:
        action = default_action(outbound_cluster_name(port.number, "", service.host))
    if rewrite:
        action.prefix_rewrite = rewrite
    return action


def mesh_action_bytes(service: Service, port: ServicePort, config: MeshConfig, rewrite: str = "") -> bytes:
    chosen = mesh_route(service, config)
    if chosen is not None:
        return route_action_bytes(chosen, config, port.number, rewrite)
    return default_action_bytes(outbound_cluster_name(port.number, "", service.host), rewrite)


def _token_matchers(token: str) -> list[rte.HeaderMatcher]:
    if not token:
        return []
    return [rte.HeaderMatcher(name=API_TOKEN_HEADER, string_match=matcher.StringMatcher(exact=token))]


def _prefix_shell(app_id: str, token: str = "") -> rte.Route:
    """token: the caller must send it in dapr-api-token (DAPR_API_TOKEN); stripped before forwarding."""
    return rte.Route(
        name=f"invoke/{app_id}",
        match=rte.RouteMatch(prefix=f"/v1.0/invoke/{app_id}/method/", headers=_token_matchers(token)),
        request_headers_to_remove=[API_TOKEN_HEADER] if token else [],
    )


def _header_shell(app_id: str, token: str = "") -> rte.Route:
    header = rte.HeaderMatcher(name=APP_ID_HEADER, string_match=matcher.StringMatcher(exact=app_id))
    return rte.Route(
        name=f"app-id/{app_id}",
        match=rte.RouteMatch(prefix="/", headers=[header, *_token_matchers(token)]),
        request_headers_to_remove=[APP_ID_HEADER, API_TOKEN_HEADER] if token else [APP_ID_HEADER],
    )


def _token_matcher_bytes(token: str) -> list[bytes]:
    if not token:
        return []
    exact = encode(matcher.StringMatcher, exact=token)
    return [encode(rte.HeaderMatcher, name=API_TOKEN_HEADER, string_match=exact)]


def _prefix_route_bytes(app_id: str, action: bytes, token: str = "") -> bytes:
    """== bytes(_prefix_shell(app_id, token) with route=action), hand-encoded (hot: two per service)."""
    match = encode(
        rte.RouteMatch, prefix=f"/v1.0/invoke/{app_id}/method/", headers=_token_matcher_bytes(token)
    )
    return encode(
        rte.Route,
        name=f"invoke/{app_id}",
        match=match,
        route=action,
        request_headers_to_remove=[API_TOKEN_HEADER] if token else None,
    )


def _header_route_bytes(app_id: str, action: bytes, token: str = "") -> bytes:
    exact = encode(matcher.StringMatcher, exact=app_id)
    header = encode(rte.HeaderMatcher, name=APP_ID_HEADER, string_match=exact)
    match = encode(rte.RouteMatch, prefix="/", headers=[header, *_token_matcher_bytes(token)])
    return encode(
        rte.Route,
        name=f"app-id/{app_id}",
        match=match,
        route=action,
        request_headers_to_remove=[APP_ID_HEADER, API_TOKEN_HEADER] if token else [APP_ID_HEADER],
    )


def invoke_routes(
    service: Service,
    config: MeshConfig,
    namespace: str,
    grpc: bool,
    token: str = "",
    policy: InvokePolicy | None = None,
) -> tuple[list[rte.Route], list[rte.Route]]:
    """(invoke-by-path routes, dapr-app-id header routes) for one service; messages (reference path).
    policy: the callers' Dapr Resiliency for this target, replacing the VS timeout/retries."""
    port = grpc_port(service) if grpc else http_port(service)
    if port is None:
        return [], []
    prefix, header = [], []
    breaker = invoke_cluster_name(service.host, port.number)  # used when policy has a breaker
    for app_id in app_ids(service, namespace):
        if not grpc:
            route = _prefix_shell(app_id, token)
            route.route = mesh_action(service, port, config, rewrite="/")
            if policy is not None:
                apply_resiliency(route.route, policy, breaker)
            prefix.append(route)
        route = _header_shell(app_id, token)
        route.route = mesh_action(service, port, config)
        if policy is not None:
            apply_resiliency(route.route, policy, breaker)
        header.append(route)
    return prefix, header


def invoke_routes_bytes(
    service: Service,
    config: MeshConfig,
    namespace: str,
    grpc: bool,
    token: str = "",
    policy: InvokePolicy | None = None,
) -> tuple[list[bytes], list[bytes]]:
    port = grpc_port(service) if grpc else http_port(service)
    if port is None:
        return [], []
    ids = app_ids(service, namespace)
    if policy is not None:  # rare: build the messages once, with the Dapr policy applied
        breaker = invoke_cluster_name(service.host, port.number)  # used when it has a breaker
        header_action = bytes(apply_resiliency(mesh_action(service, port, config), policy, breaker))
        header = [_header_route_bytes(i, header_action, token) for i in ids]
        if grpc:
            return [], header
        path_action = bytes(
            apply_resiliency(mesh_action(service, port, config, rewrite="/"), policy, breaker)
        )
        return [_prefix_route_bytes(i, path_action, token) for i in ids], header
    action = mesh_action_bytes(service, port, config)
    header = [_header_route_bytes(i, action, token) for i in ids]
    if grpc:
        return [], header
    rewritten = mesh_action_bytes(service, port, config, rewrite="/")
    return [_prefix_route_bytes(i, rewritten, token) for i in ids], header


def internal_invoke_routes_bytes(
    service: Service, namespace: str, grpc: bool, token: str = ""
) -> tuple[list[bytes], list[bytes]]:
    """Scoped routing: the invoke routes only rewrite path and host and re-enter the outbound scopes, so
    they depend on the service alone, not on its VirtualService (which the inner route applies)."""
    port = grpc_port(service) if grpc else http_port(service)
    if port is None:
        return [], []
    ids = app_ids(service, namespace)
    action = invoke_action_bytes(service, port.number, grpc, "")
    header = [_header_route_bytes(i, action, token) for i in ids]
    if grpc:
        return [], header
    rewritten = invoke_action_bytes(service, port.number, grpc, "/")
    return [_prefix_route_bytes(i, rewritten, token) for i in ids], header


def capabilities_route(cluster: str) -> rte.Route:
    return rte.Route(
        name="capabilities",
        match=rte.RouteMatch(prefix="/"),
        route=rte.RouteAction(cluster=cluster, timeout=ZERO),
    )


def dapr_vhost_header(name: str) -> rte.VirtualHost:
    return rte.VirtualHost(name=name, domains=["*"])
