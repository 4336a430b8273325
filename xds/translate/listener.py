"""LDS: per-proxy listeners (outbound HTTP, one inbound per app, Dapr HTTP and gRPC). Every HCM uses codec
AUTO and fetches its routes by RDS over ADS, so a route change travels as RDS only."""

from __future__ import annotations

from functools import cache
from typing import Any

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.http.cors import v3 as cors
from envoy_data_plane.envoy.extensions.filters.http.fault import v3 as fault
from envoy_data_plane.envoy.extensions.filters.http.router import v3 as router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.proxy import AppBinding, ProxyIdentity, ProxyMode
from xds.translate.dapr_sites import dapr_sites
from xds.translate.envoy_core import ADS, inbound_cluster_name, socket
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization, normalization_fields
from xds.translate.pack import encode
from xds.translate.route import ZERO
from xds.translate.scoped_routes import INTERNAL_LISTENER, scoped_routes_bytes
from xds.translate.upgrades import upgrade_fields

HCM_NAME = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ROUTER = hcm.HttpFilter(name="envoy.filters.http.router", typed_config=AnyMsg.pack(router.Router()))
# fault -> cors -> router (istiod's stable tail): empty filters, enabled per route (VS fault / corsPolicy)
FAULT = hcm.HttpFilter(name="envoy.filters.http.fault", typed_config=AnyMsg.pack(fault.HttpFault()))
CORS = hcm.HttpFilter(name="envoy.filters.http.cors", typed_config=AnyMsg.pack(cors.Cors()))
TAIL_FILTERS = [FAULT, CORS, ROUTER]
# Inbound and Dapr listeners: their route tables never carry a VirtualService route, so fault and CORS would
# run on every request for nothing. The outbound listener (and its internal twin) keeps them even without a
# VirtualService fault/corsPolicy: a route change then travels as RDS alone and applies to open connections
# at once, where adding a filter changes the listener and leaves pooled connections on the old filter chain
# until they drain (docs/benchmarks.md, "Where the Envoy time goes").
ROUTER_ONLY = [ROUTER]


def shared_manager_fields(normalization: PathNormalization) -> dict[str, Any]:
    """HttpConnectionManager keyword arguments every HCM Mecha builds carries, as istiod sets them on each:
    path normalization (xds/translate/normalize.py) and the WebSocket upgrade (xds/translate/upgrades.py)."""
    return {**normalization_fields(normalization), **upgrade_fields()}


@cache
def shared_manager_bytes(normalization: PathNormalization) -> bytes:
    """The same fields serialized, appended to a hand-encoded HttpConnectionManager (proto fields merge)."""
    return bytes(hcm.HttpConnectionManager(**shared_manager_fields(normalization)))


# Route configuration names do not carry the proxy's listener port: proxies whose ports differ (every sidecar
# on one host) then share one serialized RouteConfiguration, and a route change is packed once, not per proxy.
OUTBOUND_ROUTE = "outbound"


def outbound_route_name(proxy: ProxyIdentity) -> str:
    return OUTBOUND_ROUTE


def inbound_route_name(app: AppBinding) -> str:
    return f"inbound|{app.inbound_port}||"


def dapr_http_route_name(port: int) -> str:
    return "dapr-http"


def dapr_grpc_route_name(port: int) -> str:
    return "dapr-grpc"


def http_listener(
    name: str,
    address: str,
    port: int,
    stat_prefix: str,
    route_name: str,
    direction: core.TrafficDirection | None = None,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
    http_filters: list[hcm.HttpFilter] = TAIL_FILTERS,
) -> lis.Listener:
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        rds=hcm.Rds(config_source=ADS, route_config_name=route_name),
        http_filters=http_filters,
        **shared_manager_fields(normalization),
    )
    return lis.Listener(
        name=name,
        address=socket(address, port),
        filter_chains=[
            lis.FilterChain(filters=[lis.Filter(name=HCM_NAME, typed_config=AnyMsg.pack(manager))])
        ],
        traffic_direction=direction or core.TrafficDirection.UNSPECIFIED,
    )


def proxy_listeners(
    proxy: ProxyIdentity, normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION
) -> list[lis.Listener]:
    """All listeners of one proxy; a listener whose port is not configured is skipped."""
    if proxy.mode is ProxyMode.GATEWAY:
        return []  # gateway listeners are not translated in this pass (the builder warns)
    out: list[lis.Listener] = []
    if proxy.outbound_port is not None:
        bind = proxy.bind or ("0.0.0.0" if proxy.mode is ProxyMode.NODE else "127.0.0.1")
        port = proxy.outbound_port
        out.append(
            http_listener(
                f"0.0.0.0_{port}",
                bind,
                port,
                f"outbound_0.0.0.0_{port}",
                outbound_route_name(proxy),
                core.TrafficDirection.OUTBOUND,
                normalization,
            )
        )
    for app in proxy.apps:
        if app.inbound_port is None or app.app_port is None:
            continue
        port = app.inbound_port
        if app.is_tcp:
            out.append(inbound_tcp_listener(proxy, app))
            continue
        out.append(
            http_listener(
                f"virtualInbound_{port}",
                proxy.address,
                port,
                f"inbound_0.0.0.0_{port}",
                inbound_route_name(app),
                core.TrafficDirection.INBOUND,
                normalization,
                ROUTER_ONLY,
            )
        )
    for site in dapr_sites(proxy):  # the proxy's Dapr listeners, then each node-mode app's own
        out.append(
            http_listener(
                site.listener,
                "127.0.0.1",
                site.port,
                site.stat_prefix,
                site.route,
                None,
                normalization,
                ROUTER_ONLY,
            )
        )
    return out


def inbound_tcp_filter(app: AppBinding) -> lis.Filter:
    """tcp_proxy to the app (istiod's inbound TCP chain): bytes pass as they come, in either direction."""
    assert app.app_port is not None
    cluster = inbound_cluster_name(app.app_port, app.name)
    config = tcp_proxy.TcpProxy(stat_prefix=cluster, cluster=cluster)
    return lis.Filter(name=TCP_PROXY, typed_config=AnyMsg.pack(config))


def inbound_tcp_listener(proxy: ProxyIdentity, app: AppBinding) -> lis.Listener:
    """A TCP-family app port (mysql-*, redis-*, tcp-*...): no HTTP codec waits for a request the server
    never sends first."""
    assert app.inbound_port is not None
    return lis.Listener(
        name=f"virtualInbound_{app.inbound_port}",
        address=socket(proxy.address, app.inbound_port),
        filter_chains=[lis.FilterChain(filters=[inbound_tcp_filter(app)])],
        traffic_direction=core.TrafficDirection.INBOUND,
    )


def inbound_route_config(app: AppBinding) -> rte.RouteConfiguration:
    """istiod buildSidecarInboundHTTPRouteConfig: vhost inbound|http|<port>, domains *, one route."""
    assert app.inbound_port is not None and app.app_port is not None
    return rte.RouteConfiguration(
        name=inbound_route_name(app),
        validate_clusters=False,
        virtual_hosts=[
            rte.VirtualHost(
                name=f"inbound|http|{app.inbound_port}",
                domains=["*"],
                routes=[
                    rte.Route(
                        name="default",
                        match=rte.RouteMatch(prefix="/"),
                        route=rte.RouteAction(
                            cluster=inbound_cluster_name(app.app_port, app.name),
                            timeout=ZERO,
                            max_grpc_timeout=ZERO,
                        ),
                        decorator=rte.Decorator(operation=f"{app.name}.{app.namespace}:{app.app_port}/*"),
                    )
                ],
            )
        ],
    )


# ---- hot path: the same messages hand-encoded (equal bytes after decoding; checked by tests) ---------

HCM_TYPE_URL = AnyMsg.pack(hcm.HttpConnectionManager()).type_url
_ADS_BYTES = bytes(ADS)
_TAIL_BYTES = [bytes(f) for f in TAIL_FILTERS]
_ROUTER_ONLY_BYTES = [bytes(f) for f in ROUTER_ONLY]


def http_listener_bytes(
    name: str,
    address: str,
    port: int,
    stat_prefix: str,
    route_name: str,
    direction: core.TrafficDirection | None = None,
    scoped: bool = False,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
    router_only: bool = False,
) -> bytes:
    """scoped: route by SRDS scopes (xds.translate.scoped_routes) instead of the RDS table route_name.
    router_only: no fault/CORS filters (a table without VirtualService routes)."""
    return encode(
        lis.Listener,
        name=name,
        address=bytes(socket(address, port)),
        filter_chains=[_hcm_chain(stat_prefix, route_name, scoped, normalization, router_only)],
        traffic_direction=int(direction or 0),
    )


def _hcm_chain(
    stat_prefix: str,
    route_name: str,
    scoped: bool,
    normalization: PathNormalization,
    router_only: bool = False,
) -> bytes:
    if scoped:
        routing = {"scoped_routes": scoped_routes_bytes()}
    else:
        routing = {"rds": encode(hcm.Rds, config_source=_ADS_BYTES, route_config_name=route_name)}
    filters = _ROUTER_ONLY_BYTES if router_only else _TAIL_BYTES
    manager = encode(hcm.HttpConnectionManager, stat_prefix=stat_prefix, **routing, http_filters=filters)
    manager += shared_manager_bytes(normalization)
    typed = encode(AnyMsg, type_url=HCM_TYPE_URL, value=manager)
    return encode(lis.FilterChain, filters=[encode(lis.Filter, name=HCM_NAME, typed_config=typed)])


def internal_outbound_listener_bytes(normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION) -> bytes:
    """The in-process listener Dapr invocation re-enters the outbound scopes through (no socket)."""
    return encode(
        lis.Listener,
        name=INTERNAL_LISTENER,
        filter_chains=[_hcm_chain("outbound_internal", "", True, normalization)],
        traffic_direction=int(core.TrafficDirection.OUTBOUND),
        internal_listener=b"",
    )


def proxy_listener_bytes(
    proxy: ProxyIdentity,
    scoped: bool = False,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> list[tuple[str, bytes]]:
    """(name, bytes) of every listener of proxy_listeners(proxy), without building the messages.
    scoped: the outbound listener routes by SRDS scopes, and Dapr invocation re-enters it internally."""
    if proxy.mode is ProxyMode.GATEWAY:
        return []
    out: list[tuple[str, bytes]] = []
    if proxy.outbound_port is not None:
        bind = proxy.bind or ("0.0.0.0" if proxy.mode is ProxyMode.NODE else "127.0.0.1")
        port = proxy.outbound_port
        name = f"0.0.0.0_{port}"
        body = http_listener_bytes(
            name,
            bind,
            port,
            f"outbound_{name}",
            outbound_route_name(proxy),
            core.TrafficDirection.OUTBOUND,
            scoped,
            normalization,
        )
        out.append((name, body))
        if scoped and dapr_sites(proxy):
            out.append((INTERNAL_LISTENER, internal_outbound_listener_bytes(normalization)))
    for app in proxy.apps:
        if app.inbound_port is None or app.app_port is None:
            continue
        port = app.inbound_port
        name = f"virtualInbound_{port}"
        if app.is_tcp:
            out.append((name, bytes(inbound_tcp_listener(proxy, app))))
            continue
        body = http_listener_bytes(
            name,
            proxy.address,
            port,
            f"inbound_0.0.0.0_{port}",
            inbound_route_name(app),
            core.TrafficDirection.INBOUND,
            normalization=normalization,
            router_only=True,
        )
        out.append((name, body))
    for site in dapr_sites(proxy):
        body = http_listener_bytes(
            site.listener,
            "127.0.0.1",
            site.port,
            site.stat_prefix,
            site.route,
            normalization=normalization,
            router_only=True,
        )
        out.append((site.listener, body))
    return out
