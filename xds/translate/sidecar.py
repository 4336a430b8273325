"""What a Sidecar adds besides scoping (istio-mapping.md §5): `ingress[]` listeners, `egress[].port`
listeners and `outboundTrafficPolicy.mode`.

Mecha never captures traffic, so every listener here is bound explicitly:
- ingress[] -> a listener on `bind` (default: the proxy's address) and the port, whose traffic goes to the
  cluster `inbound|<port>||` = defaultEndpoint (istiod: a filter chain on virtualInbound). captureMode is
  accepted and ignored.
- egress[] with a port -> a listener on `bind` (default 127.0.0.1, never all interfaces) and that port; its
  route configuration `"<port>"` (istiod's name) holds only the hosts that egress entry lists, on that port.
- outboundTrafficPolicy ALLOW_ANY -> the catch-all vhost `allow_any` routes to `PassthroughCluster`. Without
  capture there is no original destination to pass through to, so the cluster is Envoy's dynamic forward
  proxy, which resolves the Host header (the HCM gets the matching `dynamic_forward_proxy` filter).
  REGISTRY_ONLY (and no Sidecar) keeps `block_all` (502).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.clusters.dynamic_forward_proxy import v3 as dfp_cluster
from envoy_data_plane.envoy.extensions.common.dynamic_forward_proxy import v3 as dfp_common
from envoy_data_plane.envoy.extensions.filters.http.dynamic_forward_proxy import v3 as dfp_filter
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds import types
from xds.diagnostics import Diagnostic, Severity
from xds.model.mesh import MeshConfig
from xds.model.resources import Service, ServicePort, VirtualService
from xds.model.traffic import Destination, EgressListener, IngressListener, RouteDestination, Sidecar
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.envoy_core import ADS, DEFAULT_CONNECT_TIMEOUT, protocol_options, socket
from xds.translate.listener import HCM_NAME, TAIL_FILTERS, shared_manager_fields
from xds.translate.mesh import Blob
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization
from xds.translate.pack import Memo, digest, field_number, repeated_field, resource
from xds.translate.route import ZERO, alias_virtual_hosts, block_all_vhost, virtual_host
from xds.translate.sidecar_scope import ScopedView, host_matches
from xds.translate.tcp import tcp_proxy_filter
from xds.types import Resource

PASSTHROUGH = "PassthroughCluster"
ALLOW_ANY = "ALLOW_ANY"
DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
DNS_CACHE = dfp_common.DnsCacheConfig(
    name="dynamic_forward_proxy_cache_config",
    dns_lookup_family=clu.ClusterDnsLookupFamily.V4_ONLY,
)
_HTTP2 = ("HTTP2", "GRPC", "GRPC-WEB")
_TCP = ("TCP", "TLS", "MONGO", "MYSQL", "REDIS")


def allows_any(sidecar: Sidecar | None) -> bool:
    return sidecar is not None and sidecar.outbound_mode == ALLOW_ANY


def allow_any_vhost() -> rte.VirtualHost:
    """istiod buildCatchAllVirtualHost (ALLOW_ANY): unknown hosts go to PassthroughCluster."""
    return rte.VirtualHost(
        name="allow_any",
        domains=["*"],
        routes=[
            rte.Route(
                name="allow_any",
                match=rte.RouteMatch(prefix="/"),
                route=rte.RouteAction(cluster=PASSTHROUGH, timeout=ZERO, max_grpc_timeout=ZERO),
            )
        ],
        include_request_attempt_count=True,
    )


def catch_all_vhost(sidecar: Sidecar | None) -> rte.VirtualHost:
    return allow_any_vhost() if allows_any(sidecar) else block_all_vhost()


def passthrough_cluster() -> clu.Cluster:
    config = dfp_cluster.ClusterConfig(dns_cache_config=DNS_CACHE)
    return clu.Cluster(
        name=PASSTHROUGH,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        lb_policy=clu.ClusterLbPolicy.CLUSTER_PROVIDED,
        cluster_type=clu.ClusterCustomClusterType(
            name="envoy.clusters.dynamic_forward_proxy", typed_config=AnyMsg.pack(config)
        ),
    )


def _http_filters(allow_any: bool) -> list[hcm.HttpFilter]:
    if not allow_any:
        return TAIL_FILTERS
    dfp = hcm.HttpFilter(
        name=DFP_FILTER, typed_config=AnyMsg.pack(dfp_filter.FilterConfig(dns_cache_config=DNS_CACHE))
    )
    return [dfp, *TAIL_FILTERS]


def hcm_listener(
    name: str,
    address: core.Address,
    stat_prefix: str,
    route_name: str,
    direction: core.TrafficDirection,
    allow_any: bool = False,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> lis.Listener:
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        rds=hcm.Rds(config_source=ADS, route_config_name=route_name),
        http_filters=_http_filters(allow_any),
        **shared_manager_fields(normalization),
    )
    chain = lis.FilterChain(filters=[lis.Filter(name=HCM_NAME, typed_config=AnyMsg.pack(manager))])
    return lis.Listener(name=name, address=address, filter_chains=[chain], traffic_direction=direction)


def outbound_listener(
    proxy: ProxyIdentity, normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION
) -> lis.Listener:
    """The proxy's outbound listener (listener.py) with the dynamic forward proxy filter (ALLOW_ANY)."""
    assert proxy.outbound_port is not None
    port = proxy.outbound_port
    bind = proxy.bind or ("0.0.0.0" if proxy.mode is ProxyMode.NODE else "127.0.0.1")
    name = f"0.0.0.0_{port}"
    direction = core.TrafficDirection.OUTBOUND
    return hcm_listener(
        name, socket(bind, port), f"outbound_{name}", "outbound", direction, True, normalization
    )


def endpoint_address(default_endpoint: str) -> core.Address:
    """defaultEndpoint: 127.0.0.1:PORT, 0.0.0.0:PORT (the proxy's own loopback here), [::1]:PORT, unix://."""
    if default_endpoint.startswith("unix://"):
        return core.Address(pipe=core.Pipe(path=default_endpoint.removeprefix("unix://")))
    host, _, port = default_endpoint.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return socket(host, int(port))


def ingress_cluster(ingress: IngressListener) -> clu.Cluster:
    name = f"inbound|{ingress.port}||"
    return clu.Cluster(
        name=name,
        type=clu.ClusterDiscoveryType.STATIC,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        lb_policy=clu.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ep.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                ep.LocalityLbEndpoints(
                    lb_endpoints=[
                        ep.LbEndpoint(
                            endpoint=ep.Endpoint(address=endpoint_address(ingress.default_endpoint))
                        )
                    ]
                )
            ],
        ),
        typed_extension_protocol_options=protocol_options(True) if ingress.protocol in _HTTP2 else {},
    )


def ingress_route(ingress: IngressListener) -> rte.RouteConfiguration:
    """istiod buildSidecarInboundHTTPRouteConfig: vhost inbound|http|<port>, domains *, one route."""
    name = f"inbound|{ingress.port}||"
    return rte.RouteConfiguration(
        name=name,
        validate_clusters=False,
        virtual_hosts=[
            rte.VirtualHost(
                name=f"inbound|http|{ingress.port}",
                domains=["*"],
                routes=[
                    rte.Route(
                        name="default",
                        match=rte.RouteMatch(prefix="/"),
                        route=rte.RouteAction(cluster=name, timeout=ZERO, max_grpc_timeout=ZERO),
                        decorator=rte.Decorator(operation=f"{name}/*"),
                    )
                ],
            )
        ],
    )


def ingress_listener(
    proxy: ProxyIdentity,
    ingress: IngressListener,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> lis.Listener:
    name = f"virtualInbound_{ingress.port}"
    address = socket(ingress.bind or proxy.address, ingress.port)
    cluster = f"inbound|{ingress.port}||"
    if ingress.protocol in _TCP:
        proxy_filter = tcp_proxy_filter_for(cluster)
        return lis.Listener(
            name=name,
            address=address,
            filter_chains=[lis.FilterChain(filters=[proxy_filter])],
            traffic_direction=core.TrafficDirection.INBOUND,
        )
    stat = f"inbound_0.0.0.0_{ingress.port}"
    return hcm_listener(name, address, stat, cluster, core.TrafficDirection.INBOUND, False, normalization)


def tcp_proxy_filter_for(cluster: str) -> lis.Filter:
    from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy

    config = tcp_proxy.TcpProxy(stat_prefix=cluster, cluster=cluster)
    return lis.Filter(name="envoy.filters.network.tcp_proxy", typed_config=AnyMsg.pack(config))


def egress_allows(entry: EgressListener, proxy_ns: str, config_ns: str, host: str) -> bool:
    """One egress entry's hosts ('ns/host'; '.' = the proxy's namespace, '*' = any, '~' = none)."""
    for item in entry.hosts:
        ns, _, pattern = item.partition("/")
        if ns == "~":
            continue
        if ns == "*" or (ns == "." and config_ns == proxy_ns) or ns == config_ns:
            if host_matches(pattern, host):
                return True
    return False


def _egress_services(
    view: ScopedView, entry: EgressListener, proxy: ProxyIdentity
) -> list[tuple[Service, ServicePort]]:
    assert entry.port is not None
    out = []
    for svc in view.services:
        port = svc.port(entry.port)
        if port is not None and egress_allows(entry, proxy.namespace, svc.namespace, svc.host):
            out.append((svc, port))
    return out


def egress_route(
    config: MeshConfig, view: ScopedView, entry: EgressListener, proxy: ProxyIdentity
) -> rte.RouteConfiguration:
    """Route configuration "<port>": the listed hosts' vhosts on that port (bare names too: clients send
    to this port directly), then the catch-all."""
    assert entry.port is not None
    rcfg = view.route_config
    vhosts = []
    listed = _egress_services(view, entry, proxy)
    for svc, port in listed:
        if port.is_http:
            vs = rcfg.mesh_routes_by_host.get(svc.host)
            ns = proxy.namespace if svc.namespace == proxy.namespace else ""
            vhosts.append(virtual_host(svc, port, vs, rcfg, ns, True))

    def listed_here(vs: VirtualService, host: str) -> bool:
        return egress_allows(entry, proxy.namespace, vs.meta.namespace, host)

    # VirtualService hosts that are no registry service, when this entry lists them (as the single table)
    vhosts += alias_virtual_hosts(rcfg, [s for s, _ in listed], proxy.namespace, entry.port, listed_here)
    vhosts.append(catch_all_vhost(view.scope.sidecar))
    return rte.RouteConfiguration(
        name=str(entry.port),
        virtual_hosts=vhosts,
        validate_clusters=False,
        max_direct_response_body_size_bytes=1048576,
    )


@dataclass
class SidecarExtras:
    """Resources a Sidecar adds to one proxy, and the listeners it replaces (by name)."""

    listeners: list[lis.Listener] = field(default_factory=list)
    clusters: list[clu.Cluster] = field(default_factory=list)
    routes: list[rte.RouteConfiguration] = field(default_factory=list)
    replaced: list[lis.Listener] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)


def _taken_ports(proxy: ProxyIdentity) -> set[int]:
    """Ports the proxy's own listeners bind (a Sidecar listener on one of them could never bind)."""
    ports = {a.inbound_port for a in proxy.apps if a.inbound_port is not None}
    ports |= {p for p in (proxy.outbound_port, proxy.dapr_http_port, proxy.dapr_grpc_port) if p is not None}
    return ports | {bound for _, bound in proxy.tcp_ports}


def _taken_names(proxy: ProxyIdentity) -> set[str]:
    names = {f"virtualInbound_{a.inbound_port}" for a in proxy.apps if a.inbound_port is not None}
    if proxy.outbound_port is not None:
        names.add(f"0.0.0.0_{proxy.outbound_port}")
    names |= {f"0.0.0.0_{p}" for p, _ in proxy.tcp_ports}
    return names


def sidecar_extras(
    config: MeshConfig,
    view: ScopedView | None,
    proxy: ProxyIdentity,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> SidecarExtras:
    out = SidecarExtras()
    sidecar = view.scope.sidecar if view is not None else None
    if view is None or sidecar is None or proxy.mode is ProxyMode.GATEWAY:
        return out
    taken, ports = _taken_names(proxy), _taken_ports(proxy)

    def skip(field_path: str, why: str) -> None:
        loc = sidecar.meta.location
        out.warnings.append(Diagnostic(loc, field_path, f"{why}: skipped", Severity.WARNING, "port-conflict"))

    allow_any = allows_any(sidecar)
    for i, ingress in enumerate(sidecar.ingress):
        listener = ingress_listener(proxy, ingress, normalization)
        if listener.name in taken or ingress.port in ports:
            skip(f"spec.ingress[{i}].port.number", f"port {ingress.port} is already a listener of this proxy")
            continue
        taken.add(listener.name)
        ports.add(ingress.port)
        out.listeners.append(listener)
        out.clusters.append(ingress_cluster(ingress))
        if ingress.protocol not in _TCP:
            out.routes.append(ingress_route(ingress))
    for i, entry in enumerate(sidecar.egress):
        if entry.port is None:
            continue
        name = f"{entry.bind or '0.0.0.0'}_{entry.port}"
        if name in taken or f"0.0.0.0_{entry.port}" in taken or entry.port in ports:
            skip(f"spec.egress[{i}].port.number", f"port {entry.port} is already a listener of this proxy")
            continue
        taken.add(name)
        ports.add(entry.port)
        address = socket(entry.bind or "127.0.0.1", entry.port)
        if entry.protocol in _TCP:
            targets = [(s, p) for s, p in _egress_services(view, entry, proxy) if not p.is_http]
            if not targets:
                skip(f"spec.egress[{i}].hosts", f"no TCP service on port {entry.port} among these hosts")
                continue
            rd = _default_destination(targets[0][0], entry.port)
            chain = lis.FilterChain(filters=[tcp_proxy_filter(rd, entry.port)])
            out.listeners.append(
                lis.Listener(
                    name=name,
                    address=address,
                    filter_chains=[chain],
                    traffic_direction=core.TrafficDirection.OUTBOUND,
                )
            )
            continue
        stat = f"outbound_{name}"
        direction = core.TrafficDirection.OUTBOUND
        out.listeners.append(
            hcm_listener(name, address, stat, str(entry.port), direction, allow_any, normalization)
        )
        out.routes.append(egress_route(config, view, entry, proxy))
    if allow_any:
        out.clusters.append(passthrough_cluster())
        if proxy.outbound_port is not None:
            out.replaced.append(outbound_listener(proxy, normalization))
    return out


def _default_destination(svc: Service, port: int) -> tuple[RouteDestination, ...]:
    return (RouteDestination(Destination(svc.host, "", port)),)


@dataclass(frozen=True)
class SidecarResources:
    """SidecarExtras serialized, memoized per proxy on the config it derives from."""

    listeners: tuple[Resource, ...]
    clusters: tuple[Resource, ...]
    routes: tuple[Resource, ...]
    replaced: MappingProxyType[str, Resource]
    warnings: tuple[Diagnostic, ...]


_NONE = SidecarResources((), (), (), MappingProxyType({}), ())


def sidecar_resources(
    memo: Memo,
    config: MeshConfig,
    view: ScopedView | None,
    proxy: ProxyIdentity,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> SidecarResources:
    sidecar = view.scope.sidecar if view is not None else None
    if view is None or sidecar is None or not _adds_anything(sidecar):
        return _NONE

    def build() -> SidecarResources:
        x = sidecar_extras(config, view, proxy, normalization)
        return SidecarResources(
            tuple(resource(types.LISTENER, r.name, r) for r in x.listeners),
            tuple(resource(types.CLUSTER, r.name, r) for r in x.clusters),
            tuple(resource(types.ROUTE, r.name, r) for r in x.routes),
            MappingProxyType({r.name: resource(types.LISTENER, r.name, r) for r in x.replaced}),
            tuple(x.warnings),
        )

    inputs = (proxy, sidecar, view.services, config.virtual_services, config.destination_rules)
    return memo.get(("sidecar-extras", proxy.id), inputs, build)


def _adds_anything(sidecar: Sidecar) -> bool:
    return bool(sidecar.ingress) or allows_any(sidecar) or any(e.port for e in sidecar.egress)


_CATCH_ALL_SUFFIX = repeated_field(
    field_number(rte.RouteConfiguration, "virtual_hosts"), [bytes(block_all_vhost())]
)
_ALLOW_ANY_TAIL = repeated_field(
    field_number(rte.RouteConfiguration, "virtual_hosts"), [bytes(allow_any_vhost())]
)


def allow_any_vhosts(memo: Memo, view: ScopedView, vhosts: Blob) -> Blob:
    """The outbound vhosts with the trailing block_all vhost swapped for allow_any (ALLOW_ANY)."""

    def build() -> Blob:
        assert vhosts.body.endswith(_CATCH_ALL_SUFFIX), "outbound vhosts end with block_all"
        body = vhosts.body[: -len(_CATCH_ALL_SUFFIX)] + _ALLOW_ANY_TAIL
        return Blob(body, digest(body))

    return memo.get(("allow-any", *view.scope.key), (vhosts,), build)
