"""Outbound TCP/TLS listeners (VirtualService tcp[] / tls[], istio-mapping.md §1.4).

Mecha does not capture traffic, so an app cannot reach a TCP service by its VIP and port the way a pod does
behind iptables. Instead each proxy declares in node metadata which service ports it wants as local TCP
listeners (`tcp_ports: {"<service port>": <bound port>}`); the app connects to 127.0.0.1:<bound port>.
The listener keeps istiod's name (`<VIP>_<port>` with a ServiceEntry address, else `0.0.0.0_<port>`).
TCP: the first service in scope with that port owns the listener (as istiod's shared `0.0.0.0_<port>`
without a VIP). TLS: one filter chain per SNI host (tls_inspector), so many TLS services share a port.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy import v3 as tcp_proxy
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.mesh import MeshConfig
from xds.model.resources import RouteDestination, Service, ServicePort, VirtualService
from xds.model.traffic import L4Route
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.common import outbound_cluster_name, socket
from xds.translate.scope import ScopedView, host_matches

TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_PROTOCOLS = ("TLS", "HTTPS")


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
    from xds.model.resources import Destination

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


def tcp_listeners(config: MeshConfig, view: ScopedView, proxy: ProxyIdentity) -> list[lis.Listener]:
    out: list[lis.Listener] = []
    bind = proxy.bind or ("0.0.0.0" if proxy.mode is ProxyMode.NODE else "127.0.0.1")
    for service_port, bound in proxy.tcp_ports:
        matching = [
            (svc, sp)
            for svc in view.services
            for sp in svc.ports
            if sp.number == service_port and not sp.is_http
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
            listener.filter_chains = [_tcp_chain(svc, sp, view.routes_by_host.get(svc.host))]
        out.append(listener)
    return out


def tcp_listener_inputs(view: ScopedView, proxy: ProxyIdentity) -> tuple[object, ...]:
    """Memo inputs: the services on the proxy's TCP ports and their VirtualServices."""
    ports = {p for p, _ in proxy.tcp_ports}
    services = [s for s in view.services if any(p.number in ports for p in s.ports)]
    return (proxy, *services, *(view.routes_by_host.get(s.host) for s in services))
