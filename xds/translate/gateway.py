"""Ingress gateways: Gateway servers + the VirtualServices bound to them -> listeners and routes (§4).

A gateway-mode proxy serves the Gateways named in its node metadata (`gateways: [ns/name]`) or whose
selector matches its labels. Each server port becomes listener `0.0.0.0_<bound port>` (the bound port comes
from `gateway_ports`, default the server port). HTTP: RDS `http.<port>`; HTTPS: one TLS filter chain per
server (SNI = its hosts, certificate files) with RDS `https.<port>.<portName>.<gw>.<ns>`; TCP: tcp_proxy to
the VS tcp[] destination; TLS PASSTHROUGH: one filter chain per SNI name of the bound VS tls[] routes (the
first route of a name wins), tcp_proxy to its destinations, or a closed connection when it has none.
Virtual hosts are `<host>:<server port>`; a port with no route gets
`blackhole:<port>` (404). `tls.httpsRedirect` -> vhost require_tls ALL (301 to https).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.network.direct_response import v3 as direct
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy import v3 as tcp
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds import types
from xds.diagnostics import Diagnostic, Location, Severity
from xds.model.gateway import Gateway, GatewayServer, gateways
from xds.model.mesh import MeshConfig
from xds.model.resources import RouteDestination, ServicePort, VirtualService
from xds.model.security import security_policies
from xds.proxy import ProxyIdentity
from xds.translate.envoy_core import ADS, outbound_cluster_name, socket
from xds.translate.listener import HCM_NAME, ROUTER, shared_manager_fields
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization
from xds.translate.pack import encode
from xds.translate.route import destination_port, vs_routes_bytes
from xds.translate.security.credentials import Credential, ca_secret_name, secret_name
from xds.translate.security.jwt import authn_http_filters
from xds.translate.security.proxy import TLS_INSPECTOR
from xds.translate.security.rbac import applicable, rbac_http_filters, rbac_network_filters, tcp_warnings
from xds.types import Resource

TLS_SOCKET = "envoy.transport_sockets.tls"


def gateways_for(proxy: ProxyIdentity, config: MeshConfig) -> list[Gateway]:
    labels = proxy.label_map
    out = []
    for gw in gateways(config.carried):
        named = gw.ref in proxy.gateways
        selected = bool(gw.selector) and all(labels.get(k) == v for k, v in gw.selector)
        if named or selected:
            out.append(gw)
    return out


def http_route_name(port: int) -> str:
    return f"http.{port}"


def https_route_name(port: int, server: GatewayServer, gw: Gateway) -> str:
    return f"https.{port}.{server.port_name}.{gw.meta.name}.{gw.meta.namespace}"


def _bound_vs(gw: Gateway, config: MeshConfig) -> list[VirtualService]:
    out = []
    # istiod merges the routes of every VirtualService for a host in creation order: the oldest first
    for vs in sorted(config.virtual_services, key=lambda v: v.age_key):
        for ref in vs.gateways:
            full = ref if "/" in ref else f"{vs.meta.namespace}/{ref}"
            if full == gw.ref:
                out.append(vs)
                break
    return out


def _host_match(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def _intersect(server_host: str, vs_host: str) -> str | None:
    """The more specific of the two when one covers the other (istiod: server hosts filter VS hosts)."""
    if _host_match(server_host, vs_host):
        return vs_host
    if _host_match(vs_host, server_host):
        return server_host
    return None


def _server_hosts(server: GatewayServer, vs_namespace: str, gateway_namespace: str) -> list[str]:
    """`[namespace/]host` entries of a server that a VS in vs_namespace may bind to: no namespace or `*/`
    = any namespace, `./` = the Gateway's own namespace (istiod)."""
    out = []
    for entry in server.hosts:
        ns, _, host = entry.rpartition("/")
        if ns == ".":
            ns = gateway_namespace
        if ns in ("", "*") or ns == vs_namespace:
            out.append(host)
    return out


def _vhosts(servers: list[tuple[Gateway, GatewayServer]], config: MeshConfig, redirect: bool) -> list[bytes]:
    """Virtual hosts of one RDS: per (VS host ∩ server host), routes of every bound VS in order."""
    by_host: dict[str, list[bytes]] = {}
    port = servers[0][1].number
    for gw, server in servers:
        for vs in _bound_vs(gw, config):
            routes: list[bytes] | None = None
            for vs_host in vs.hosts:
                for server_host in _server_hosts(server, vs.meta.namespace, gw.meta.namespace):
                    host = _intersect(server_host, vs_host)
                    if host is None:
                        continue
                    if routes is None:
                        routes = vs_routes_bytes(vs, ServicePort(number=port, protocol="HTTP"), config)
                    by_host.setdefault(host, []).extend(routes)
    out = []
    for host, routes in sorted(by_host.items(), key=lambda kv: (kv[0] == "*", kv[0])):
        out.append(
            encode(
                rte.VirtualHost,
                name=f"{host}:{port}",
                domains=[host],
                routes=routes,
                require_tls=int(rte.VirtualHostTlsRequirementType.ALL) if redirect else None,
            )
        )
    if not out:
        out.append(bytes(blackhole_vhost(port)))
    return out


def blackhole_vhost(port: int) -> rte.VirtualHost:
    return rte.VirtualHost(
        name=f"blackhole:{port}",
        domains=["*"],
        routes=[
            rte.Route(
                name="blackhole",
                match=rte.RouteMatch(prefix="/"),
                direct_response=rte.DirectResponseAction(status=404),
            )
        ],
    )


def _route_config(name: str, vhosts: list[bytes]) -> Resource:
    # domains are bare hosts: a client's host:port matches them, and the backend still sees the Host it sent
    header = bytes(
        rte.RouteConfiguration(name=name, validate_clusters=False, ignore_port_in_host_matching=True)
    )
    return Resource.make(types.ROUTE, name, header + encode(rte.RouteConfiguration, virtual_hosts=vhosts))


def _hcm(
    stat_prefix: str, route_name: str, filters: list[hcm.HttpFilter], normalization: PathNormalization
) -> lis.Filter:
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        rds=hcm.Rds(config_source=ADS, route_config_name=route_name),
        http_filters=[*filters, ROUTER],  # RequestAuthentication + AuthorizationPolicy of the gateway
        use_remote_address=True,  # the gateway is the edge: x-forwarded-for starts here
        **shared_manager_fields(normalization),
    )
    return lis.Filter(name=HCM_NAME, typed_config=AnyMsg.pack(manager))


def _file(path: str) -> core.DataSource:
    return core.DataSource(filename=path)


def _sds(name: str) -> tls.SdsSecretConfig:
    return tls.SdsSecretConfig(name=name, sds_config=ADS)


def _downstream_tls(server: GatewayServer) -> core.TransportSocket:
    t = server.tls
    assert t is not None
    mutual = t.mode == "MUTUAL"
    common = tls.CommonTlsContext(alpn_protocols=["h2", "http/1.1"])
    if t.credential_name:  # istiod: SDS over ADS, kubernetes://<name> (+ <name>-cacert)
        common.tls_certificate_sds_secret_configs = [_sds(secret_name(t.credential_name))]
        if mutual:
            common.validation_context_sds_secret_config = _sds(ca_secret_name(t.credential_name))
    else:
        common.tls_certificates = [
            tls.TlsCertificate(
                certificate_chain=_file(t.server_certificate), private_key=_file(t.private_key)
            )
        ]
        if mutual:
            common.validation_context = tls.CertificateValidationContext(trusted_ca=_file(t.ca_certificates))
    ctx = tls.DownstreamTlsContext(common_tls_context=common, require_client_certificate=mutual or None)
    return core.TransportSocket(name=TLS_SOCKET, typed_config=AnyMsg.pack(ctx))


def _tcp_cluster(servers: list[tuple[Gateway, GatewayServer]], config: MeshConfig) -> tcp.TcpProxy | None:
    port = servers[0][1].number
    for gw, _server in servers:
        for vs in _bound_vs(gw, config):
            for route in getattr(vs, "tcp", ()):
                if route.matches and not any(m.port in (None, port) for m in route.matches):
                    continue
                if not route.route:  # no usable backend (Gateway API): no listener, connections refused
                    return None
                return _tcp_proxy(route.route, f"{vs.meta.name}.{port}", config, port)
    return None


def _tcp_proxy(route: tuple[RouteDestination, ...], stat: str, config: MeshConfig, port: int) -> tcp.TcpProxy:
    dests = [(d.destination, d.weight) for d in route]
    names = [outbound_cluster_name(destination_port(d, config, port), d.subset, d.host) for d, _ in dests]
    if len(names) == 1:
        return tcp.TcpProxy(stat_prefix=names[0], cluster=names[0])
    weights = [w or 0 for _, w in dests]
    return tcp.TcpProxy(
        stat_prefix=stat,
        weighted_clusters=tcp.TcpProxyWeightedCluster(
            clusters=[
                tcp.TcpProxyWeightedClusterClusterWeight(name=n, weight=w)
                for n, w in zip(names, weights, strict=True)
                if w > 0
            ]
        ),
    )


def _passthrough_chains(
    servers: list[tuple[Gateway, GatewayServer]], config: MeshConfig, filters: list[lis.Filter]
) -> list[lis.FilterChain]:
    """TLS PASSTHROUGH servers: a filter chain per SNI name (server hosts ∩ route sniHosts), routed by the
    first bound tls[] route naming it; a route without destinations closes its connections."""
    port = servers[0][1].number
    chains: list[lis.FilterChain] = []
    seen: set[str] = set()  # Envoy refuses two chains with the same server names
    for gw, server in servers:
        for vs in _bound_vs(gw, config):
            server_hosts = _server_hosts(server, vs.meta.namespace, gw.meta.namespace)
            for route in vs.tls:
                for m in route.matches:
                    if m.port not in (None, port):
                        continue
                    names: list[str] = []
                    for sni in m.sni_hosts or ("*",):
                        for server_host in server_hosts:
                            host = _intersect(server_host, sni)
                            if host is not None and host not in names and host not in seen:
                                names.append(host)
                    if not names:
                        continue
                    seen.update(names)
                    if route.route:
                        proxy = _tcp_proxy(route.route, f"{vs.meta.name}.{port}", config, port)
                        last = lis.Filter(
                            name="envoy.filters.network.tcp_proxy", typed_config=AnyMsg.pack(proxy)
                        )
                    else:  # the spec: reject the connection
                        closed = AnyMsg.pack(direct.Config())
                        last = lis.Filter(name="envoy.filters.network.direct_response", typed_config=closed)
                    match = lis.FilterChainMatch(server_names=[] if "*" in names else names)
                    chains.append(lis.FilterChain(filter_chain_match=match, filters=[*filters, last]))
    # the catch-all chain last: Envoy picks by the most specific server name anyway
    return sorted(chains, key=lambda c: not (c.filter_chain_match and c.filter_chain_match.server_names))


@dataclass
class GatewayOutput:
    listeners: list[Resource]
    routes: list[Resource]
    warnings: list[Diagnostic]
    secrets: list[Resource] = field(default_factory=list)  # credentialName secrets the chains reference


def credential_names(proxy: ProxyIdentity, config: MeshConfig) -> set[str]:
    """credentialName of every HTTPS server of the proxy's Gateways (what the builder must load)."""
    return {
        s.tls.credential_name
        for gw in gateways_for(proxy, config)
        for s in gw.servers
        if s.protocol == "HTTPS" and s.tls is not None and s.tls.credential_name
    }


def _credential_problem(server: GatewayServer, credentials: Mapping[str, Credential]) -> str:
    """Why this server's credentialName cannot be served ("" when it can)."""
    t = server.tls
    if t is None or not t.credential_name:
        return ""
    found = credentials.get(t.credential_name)
    if found is None:
        return f"credential {t.credential_name!r} not found"
    if t.mode == "MUTUAL" and found.ca is None:
        return f"credential {t.credential_name!r} has no ca.crt, which mode MUTUAL needs"
    return ""


def gateway_resources(
    proxy: ProxyIdentity,
    config: MeshConfig,
    credentials: Mapping[str, Credential] | None = None,
    describe: Callable[[str], str] | None = None,
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
) -> GatewayOutput:
    """credentials: the loaded credentialName secrets by name; a server whose credential is missing gets
    no filter chain (Envoy would otherwise keep the whole listener warming) and an error diagnostic."""
    credentials = credentials or {}
    secrets: dict[str, Resource] = {}
    bound = dict(proxy.gateway_ports)
    by_port: dict[int, list[tuple[Gateway, GatewayServer]]] = {}
    for gw in gateways_for(proxy, config):
        for server in gw.servers:
            by_port.setdefault(server.number, []).append((gw, server))
    listeners: list[Resource] = []
    routes: list[Resource] = []
    warnings: list[Diagnostic] = []
    where = Location(file="<proxy>", kind="Proxy", namespace=proxy.namespace, name=proxy.id)
    policies = security_policies(config.carried, config.inputs.jwks_texts())
    labels = proxy.label_map
    http_filters = authn_http_filters(policies, proxy.namespace, labels, config)
    http_filters += rbac_http_filters(policies, proxy.namespace, labels)
    tcp_filters = rbac_network_filters(policies, proxy.namespace, labels)
    tcp_used = False
    if not by_port:
        msg = "gateway mode: no Gateway names this proxy (node metadata gateways / labels): no listeners"
        warnings.append(Diagnostic(where, "gateways", msg, Severity.WARNING, "no-gateway"))
    for number, servers in sorted(by_port.items()):
        port = bound.get(number, number)
        name = f"0.0.0.0_{port}"
        chains: list[lis.FilterChain] = []
        listener_filters: list[lis.ListenerFilter] = []
        https = [(g, s) for g, s in servers if s.protocol == "HTTPS"]
        plain_http = [(g, s) for g, s in servers if s.is_http]
        tcp_servers = [(g, s) for g, s in servers if s.protocol == "TCP"]
        passthrough = [
            (g, s)
            for g, s in servers
            if s.protocol == "TLS" and s.tls is not None and s.tls.mode == "PASSTHROUGH"
        ]
        if https:
            listener_filters = [TLS_INSPECTOR]
            for gw, server in https:
                problem = _credential_problem(server, credentials)
                if problem:
                    at = f"spec.servers[{server.index}].tls.credentialName"
                    name_ = server.tls.credential_name if server.tls else ""
                    hint = describe(name_) if describe and name_ not in credentials else ""
                    msg = f"Gateway {gw.ref}: {problem}{f' ({hint})' if hint else ''}; server skipped"
                    warnings.append(
                        Diagnostic(gw.meta.location, at, msg, Severity.ERROR, "missing-credential")
                    )
                    continue
                if server.tls is not None and server.tls.credential_name:
                    for r in credentials[server.tls.credential_name].resources:
                        secrets[r.name] = r
                rds = https_route_name(port, server, gw)
                routes.append(_route_config(rds, _vhosts([(gw, server)], config, False)))
                names = [h.rpartition("/")[2] for h in server.hosts]
                match = lis.FilterChainMatch(server_names=[] if "*" in names else names)
                chains.append(
                    lis.FilterChain(
                        filter_chain_match=match,
                        filters=[_hcm(f"outbound_{name}", rds, http_filters, normalization)],
                        transport_socket=_downstream_tls(server),
                    )
                )
        elif plain_http:
            rds = http_route_name(port)
            redirect = all(s.tls is not None and s.tls.https_redirect for _, s in plain_http)
            routes.append(_route_config(rds, _vhosts(plain_http, config, redirect)))
            chains.append(
                lis.FilterChain(filters=[_hcm(f"outbound_{name}", rds, http_filters, normalization)])
            )
        elif tcp_servers:
            proxy_cfg = _tcp_cluster(tcp_servers, config)
            if proxy_cfg is None:
                gw, server = tcp_servers[0]
                msg = f"Gateway {gw.ref} TCP server port {number}: no VirtualService tcp route; no listener"
                warnings.append(Diagnostic(where, "gateways", msg, Severity.WARNING, "no-route"))
                continue
            typed = AnyMsg.pack(proxy_cfg)
            tcp_proxy = lis.Filter(name="envoy.filters.network.tcp_proxy", typed_config=typed)
            chains.append(lis.FilterChain(filters=[*tcp_filters, tcp_proxy]))
            tcp_used = True
        elif passthrough:
            listener_filters = [TLS_INSPECTOR]
            chains = _passthrough_chains(passthrough, config, tcp_filters)
            tcp_used = tcp_used or bool(chains)
            if not chains:
                gw, _server = passthrough[0]
                msg = f"Gateway {gw.ref} TLS server port {number}: no VirtualService tls route; no listener"
                warnings.append(Diagnostic(where, "gateways", msg, Severity.WARNING, "no-route"))
        if not chains:  # every HTTPS server of the port was skipped
            continue
        listener = lis.Listener(
            name=name,
            address=socket(proxy.bind or "0.0.0.0", port),  # node metadata `bind` narrows it
            filter_chains=chains,
            listener_filters=listener_filters,
            traffic_direction=core.TrafficDirection.OUTBOUND,
        )
        listeners.append(Resource.make(types.LISTENER, name, bytes(listener)))
    if tcp_used:  # once per proxy, not per TCP port
        warnings += tcp_warnings(applicable(policies, proxy.namespace, labels))
    return GatewayOutput(listeners, routes, warnings, list(secrets.values()))
