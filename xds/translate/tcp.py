"""Outbound TCP/TLS listeners (VirtualService tcp[] / tls[], istio-mapping.md §1.4).

Mecha does not capture traffic, so an app cannot reach a TCP service by its VIP and port the way a pod does
behind iptables. Instead each proxy declares in node metadata which service ports it wants as local TCP
listeners (`tcp_ports: {"<service port>": <bound port>}`); the app connects to 127.0.0.1:<bound port>.
The listener keeps istiod's name (`<VIP>_<port>` with a ServiceEntry address, else `0.0.0.0_<port>`).
TCP: the first service in scope with that port owns the listener (as istiod's shared `0.0.0.0_<port>`
without a VIP). TLS: one filter chain per SNI host (tls_inspector), so many TLS services share a port.
A port that declares no protocol is sniffed as istiod sniffs it: HTTP/1.x and h2c (http_inspector) take the
HTTP chain, routed as the service's virtual host on the outbound listener; anything else (TLS included) is
proxied as TCP, so a Redis- or MySQL-like client on an unnamed port works.
"""

from __future__ import annotations

import betterproto2
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.listener.http_inspector import v3 as http_inspector
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.mesh import MeshConfig
from xds.model.resources import Service, ServicePort, VirtualService
from xds.model.traffic import L4Route, RouteDestination
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.envoy_core import outbound_cluster_name, socket
from xds.translate.listener import HCM_NAME, TAIL_FILTERS, shared_manager_fields
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization
from xds.translate.route import virtual_host
from xds.translate.sidecar_scope import ScopedView, host_matches

TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
TLS_PROTOCOLS = ("TLS", "HTTPS")
# what http_inspector reports for plaintext HTTP (istiod's plaintextHTTPALPNs)
SNIFFED_HTTP = ["http/1.0", "http/1.1", "h2c"]


def _cluster(rd: RouteDestination, port: int) -> str:
    return outbound_cluster_name(rd.destination.port or port, rd.destination.subset, rd.destination.host)


def tcp_proxy_filter(route: tuple[RouteDestination, ...], port: int) -> lis.Filter:
    """One destination -> cluster; several -> weighted_clusters; stat_prefix = first cluster (istiod)."""
    clusters = [(_cluster(rd, port), rd.weight) for rd in route]
    proxy = tcp_proxy.TcpProxy(stat_prefix=clusters[0][0])
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        n = len(clusters)
        weights = [w if w is not None else 100 // n for _, w in clusters]
        proxy.weighted_clusters = tcp_proxy.TcpProxyWeightedCluster(
            clusters=[
                tcp_proxy.TcpProxyWeightedClusterClusterWeight(name=c, weight=w)
                for (c, _), w in zip(clusters, weights, strict=True)
                if w > 0
            ]
        )
    return lis.Filter(name=TCP_PROXY, typed_config=AnyMsg.pack(proxy))


def _l4_route(routes: tuple[L4Route, ...], port: int, sni: str | None = None) -> L4Route | None:
    """The first tcp/tls route whose match (port, sniHosts) accepts this listener; no match = any."""
    for r in routes:
        if not r.matches:
            return r
        for m in r.matches:
            if m.port is not None and m.port != port:
                continue
            if sni is not None and not any(host_matches(h, sni) for h in m.sni_hosts):
                continue
            return r
    return None


def _default_route(svc: Service, port: int) -> tuple[RouteDestination, ...]:
    from xds.model.traffic import Destination

    return (RouteDestination(Destination(svc.host, "", port)),)


def _tcp_chain(svc: Service, port: ServicePort, vs: VirtualService | None) -> lis.FilterChain:
    chosen = _l4_route(vs.tcp, port.number) if vs is not None else None
    route = chosen.route if chosen is not None else _default_route(svc, port.number)
    return lis.FilterChain(filters=[tcp_proxy_filter(route, port.number)])


def _tls_chains(
    services: list[tuple[Service, ServicePort]], view: ScopedView, port: int
) -> list[lis.FilterChain]:
    chains: list[lis.FilterChain] = []
    seen: set[str] = set()
    for svc, sp in services:
        vs = view.routes_by_host.get(svc.host)
        for r in vs.tls if vs is not None else ():
            for m in r.matches:
                if m.port is not None and m.port != sp.number:
                    continue
                names = [h for h in m.sni_hosts if h not in seen]
                if names:
                    seen.update(names)
                    chains.append(
                        lis.FilterChain(
                            filter_chain_match=lis.FilterChainMatch(server_names=names),
                            filters=[tcp_proxy_filter(r.route, port)],
                        )
                    )
        if svc.host not in seen:  # the service itself, by its own name (no VS or no matching rule)
            seen.add(svc.host)
            chains.append(
                lis.FilterChain(
                    filter_chain_match=lis.FilterChainMatch(server_names=[svc.host]),
                    filters=[tcp_proxy_filter(_default_route(svc, port), port)],
                )
            )
    return chains


def _inspector(name: str, config: betterproto2.Message) -> lis.ListenerFilter:
    return lis.ListenerFilter(name=name, typed_config=AnyMsg.pack(config))


def _sniffed_http_chain(
    svc: Service,
    port: ServicePort,
    view: ScopedView,
    proxy: ProxyIdentity,
    stat_prefix: str,
    normalization: PathNormalization,
) -> lis.FilterChain:
    """HTTP detected: the service's outbound virtual host answers every Host (the app dialled this
    listener for that one service, so its Host header may be anything, e.g. 127.0.0.1:<port>)."""
    rcfg = view.route_config  # what the outbound table's virtual host of this service reads
    vhost = virtual_host(svc, port, rcfg.mesh_routes_by_host.get(svc.host), rcfg, proxy.namespace, True)
    vhost.domains = ["*"]
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        route_config=rte.RouteConfiguration(
            name=str(port.number), virtual_hosts=[vhost], validate_clusters=False
        ),
        http_filters=TAIL_FILTERS,
        **shared_manager_fields(normalization),
    )
    return lis.FilterChain(
        filter_chain_match=lis.FilterChainMatch(
            transport_protocol="raw_buffer", application_protocols=SNIFFED_HTTP
        ),
        filters=[lis.Filter(name=HCM_NAME, typed_config=AnyMsg.pack(manager))],
    )


def tcp_listeners(
    config: MeshConfig,
    view: ScopedView,
    proxy: ProxyIdentity,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> list[lis.Listener]:
    out: list[lis.Listener] = []
    bind = proxy.bind or ("0.0.0.0" if proxy.mode is ProxyMode.NODE else "127.0.0.1")
    for service_port, bound in proxy.tcp_ports:
        matching = [
            (svc, sp)
            for svc in view.services
            for sp in svc.ports
            if sp.number == service_port and (sp.is_sniffed or not sp.is_http)
        ]
        if not matching:
            continue  # nothing in scope on that port: no listener (connections are refused)
        tls = [(s, p) for s, p in matching if p.protocol in TLS_PROTOCOLS]
        listener = lis.Listener(address=socket(bind, bound), traffic_direction=core.TrafficDirection.OUTBOUND)
        if tls:
            listener.name = f"0.0.0.0_{service_port}"
            listener.filter_chains = _tls_chains(tls, view, service_port)
            listener.listener_filters = [
                lis.ListenerFilter(name=TLS_INSPECTOR, typed_config=AnyMsg.pack(tls_inspector.TlsInspector()))
            ]
        else:
            svc, sp = matching[0]
            vip = svc.addresses[0] if svc.addresses else "0.0.0.0"
            listener.name = f"{vip}_{service_port}"
            tcp = _tcp_chain(svc, sp, view.routes_by_host.get(svc.host))
            listener.filter_chains = [tcp]
            if sp.is_sniffed:  # istiod's protocol detection: tls_inspector + http_inspector
                prefix = f"outbound_{listener.name}"
                http = _sniffed_http_chain(svc, sp, view, proxy, prefix, normalization)
                # Envoy matches transport_protocol before application_protocols, so a chain without a match
                # would lose to the HTTP chain's raw_buffer before ALPN is compared: TCP is the default chain
                listener.filter_chains = [http]
                listener.default_filter_chain = tcp
                listener.listener_filters = [
                    _inspector(TLS_INSPECTOR, tls_inspector.TlsInspector()),
                    _inspector(HTTP_INSPECTOR, http_inspector.HttpInspector()),
                ]
                # a server-first protocol sends nothing to inspect: after the timeout, proxy it as TCP
                listener.continue_on_listener_filters_timeout = True
        out.append(listener)
    return out


def tcp_listener_inputs(view: ScopedView, proxy: ProxyIdentity) -> tuple[object, ...]:
    """Memo inputs: the services on the proxy's TCP ports and their VirtualServices."""
    ports = {p for p, _ in proxy.tcp_ports}
    services = [s for s in view.services if any(p.number in ports for p in s.ports)]
    inputs = (proxy, *services, *(view.routes_by_host.get(s.host) for s in services))
    if any(p.is_sniffed for s in services for p in s.ports if p.number in ports):
        # a sniffed port carries its HTTP routes, which read the whole config (delegates, ports)
        return (*inputs, view.route_config)
    return inputs
