"""Proxyless gRPC (istiod's pilot/pkg/networking/grpcgen): what a grpcio client with `xds:///host:port` and a
GRPC_XDS_BOOTSTRAP is served, with no Envoy in the path.

- LDS: one `api_listener` per service host:port, under every name a client may dial (`reviews:9080` in its
  own namespace, `reviews.default:9080`, `reviews.default.svc:9080`, the FQDN), each an HttpConnectionManager
  whose routes come by RDS as `<fqdn>:<port>` (istiod's clusterKey naming), with gRPC's supported filters:
  fault (VirtualService fault injection) then router.
- RDS: the service's virtual host, built by the same code as a sidecar's (weights, header matches, retries,
  fault; gRPC ignores `timeout` and reads `max_stream_duration`, which istiod's setTimeout sets for proxyless
  nodes: a VirtualService timeout is copied there, with `grpc_timeout_header_max`).
- CDS/EDS: one plain EDS cluster per outbound cluster of the mesh, round robin (istiod's edsCluster: gRPC
  refuses Envoy's LEAST_REQUEST and SDS), over the mesh's endpoints with every locality weighted. Where a
  sidecar's cluster is ISTIO_MUTUAL (auto-mTLS or a DestinationRule), the proxyless one carries istiod's
  grpcgen UpstreamTlsContext: the same SNI and peer SANs, certificates from the bootstrap's `file_watcher`
  certificate provider (the files the workload's agent writes) instead of SDS.
- LDS for gRPC servers (grpcgen buildInboundListeners): a `grpc.server(xds=True)` asks for
  `xds.istio.io/grpc/lds/inbound/<ip>:<port>` (the bootstrap's server_listener_resource_name_template) for
  each port it listens on. Each port where this proxy is a service's endpoint gets one filter chain: mTLS
  (client certificate required, the same file_watcher provider) or plaintext from PeerAuthentication, then
  RBAC (ALLOW / DENY, the only actions gRPC takes) and a router with a non-forwarding route.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.rbac import v3 as rbac
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.http.rbac import v3 as http_rbac
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.mesh import MeshConfig
from xds.model.resources import Service, ServicePort, WorkloadEndpoint
from xds.model.security import SecurityPolicies
from xds.proxy import ProxyIdentity
from xds.translate.envoy_core import ADS, socket
from xds.translate.listener import FAULT, ROUTER
from xds.translate.route import virtual_host
from xds.translate.security import mtls
from xds.translate.security.mtls import TLS_SOCKET
from xds.translate.security.rbac import RBAC_FILTER, applicable, rbac_configs

# Names the gRPC bootstrap's certificate_providers use (istio-agent's names in its generated bootstrap)
CERT_PROVIDER = "default"
ROOT_CERT_NAME = "ROOTCA"


def dial_names(svc: Service, port: ServicePort, client_namespace: str) -> list[str]:
    """Every `host:port` a client may put after `xds:///` for this service port (istiod tryFindFQDN)."""
    name, ns = svc.host.split(".")[0], svc.namespace
    hosts = [svc.host]
    if svc.host.endswith(f".{ns}.svc.cluster.local"):
        hosts += [f"{name}.{ns}", f"{name}.{ns}.svc"]
        if ns == client_namespace:
            hosts.append(name)
    return [f"{h}:{port.number}" for h in hosts]


def route_name(svc: Service, port: ServicePort) -> str:
    return f"{svc.host}:{port.number}"


def api_listener(name: str, route: str, port: int) -> lis.Listener:
    manager = hcm.HttpConnectionManager(
        rds=hcm.Rds(config_source=ADS, route_config_name=route),
        http_filters=[FAULT, ROUTER],  # gRPC's supported filters; the router must be last
    )
    return lis.Listener(
        name=name,
        address=socket("0.0.0.0", port),
        api_listener=lis.ApiListener(api_listener=AnyMsg.pack(manager)),
    )


def _http_ports(services: Iterable[Service]) -> Iterator[tuple[Service, ServicePort]]:
    for svc in services:
        for port in svc.ports:
            if port.is_http:
                yield svc, port


def proxyless_listeners(services: Iterable[Service], proxy: ProxyIdentity) -> list[lis.Listener]:
    return [
        api_listener(name, route_name(svc, port), port.number)
        for svc, port in _http_ports(services)
        for name in dial_names(svc, port, proxy.namespace)
    ]


def proxyless_routes(
    services: Iterable[Service], config: MeshConfig, proxy: ProxyIdentity
) -> list[rte.RouteConfiguration]:
    """One RouteConfiguration per service port, holding that service's virtual host only."""
    out = []
    for svc, port in _http_ports(services):
        vs = config.mesh_routes_by_host.get(svc.host)
        ns = proxy.namespace if svc.namespace == proxy.namespace else ""
        vhost = virtual_host(svc, port, vs, config, ns, True)
        vhost.domains = ["*"]  # the listener already chose the service; gRPC matches the dialled name
        for route in vhost.routes:
            _grpc_timeout(route)
        out.append(rte.RouteConfiguration(name=route_name(svc, port), virtual_hosts=[vhost]))
    return out


def _grpc_timeout(route: rte.Route) -> None:
    """istiod setTimeout for proxyless gRPC: the route's timeout as max_stream_duration (and the cap on a
    client's grpc-timeout header); gRPC does not read RouteAction.timeout."""
    action = route.route
    if action is None or action.timeout is None or not action.timeout.total_seconds():
        return
    action.max_stream_duration = rte.RouteActionMaxStreamDuration(
        max_stream_duration=action.timeout, grpc_timeout_header_max=action.timeout
    )


def eds_cluster(name: str) -> clu.Cluster:
    """istiod grpcgen edsCluster: EDS over ADS, round robin (gRPC NACKs the LEAST_REQUEST Envoy gets)."""
    return clu.Cluster(
        name=name,
        type=clu.ClusterDiscoveryType.EDS,
        eds_cluster_config=clu.ClusterEdsClusterConfig(service_name=name, eds_config=ADS),
        lb_policy=clu.ClusterLbPolicy.ROUND_ROBIN,
    )


def proxyless_clusters(sidecar_clusters: Mapping[str, Any]) -> list[clu.Cluster]:
    """One EDS cluster per outbound cluster of the mesh (default and subsets); sidecar_clusters: name ->
    Resource (packed Cluster) of the mesh's sidecar clusters, whose ISTIO_MUTUAL contexts are carried over."""
    out = []
    for name in sorted(n for n in sidecar_clusters if n.startswith("outbound|")):
        cluster = eds_cluster(name)
        mesh_tls = _istio_mutual(clu.Cluster.parse(sidecar_clusters[name].body))
        if mesh_tls is not None:
            cluster.transport_socket = core.TransportSocket(
                name=TLS_SOCKET, typed_config=AnyMsg.pack(mesh_tls)
            )
        out.append(cluster)
    return out


def _istio_mutual(sidecar: clu.Cluster) -> tls.UpstreamTlsContext | None:
    """The grpcgen form of a sidecar cluster's mesh mTLS context (SDS `default`/`ROOTCA`), else None."""
    socket_ = sidecar.transport_socket
    if socket_ is None or socket_.name != TLS_SOCKET or socket_.typed_config is None:
        return None
    context = tls.UpstreamTlsContext.parse(socket_.typed_config.value)
    common = context.common_tls_context
    combined = common.combined_validation_context if common is not None else None
    secrets = [c.name for c in (common.tls_certificate_sds_secret_configs if common is not None else [])]
    if combined is None or secrets != [CERT_PROVIDER]:
        return None  # SIMPLE/MUTUAL with files: not the mesh's certificates
    typed = (
        combined.default_validation_context.match_typed_subject_alt_names
        if combined.default_validation_context
        else []
    )
    return tls.UpstreamTlsContext(
        common_tls_context=_grpc_common([t.matcher for t in typed]), sni=context.sni
    )


def _grpc_common(sans: list[Any]) -> tls.CommonTlsContext:
    """istiod grpcgen buildCommonTLSContext: certificate and CA from the bootstrap's file_watcher provider."""
    return tls.CommonTlsContext(
        tls_certificate_provider_instance=tls.CertificateProviderPluginInstance(CERT_PROVIDER, CERT_PROVIDER),
        combined_validation_context=tls.CommonTlsContextCombinedCertificateValidationContext(
            # gRPC (gRFC A29) matches match_subject_alt_names against the peer's URI SANs, as istiod sends
            default_validation_context=tls.CertificateValidationContext(
                match_subject_alt_names=sans,
                ca_certificate_provider_instance=tls.CertificateProviderPluginInstance(
                    CERT_PROVIDER, ROOT_CERT_NAME
                ),
            ),
        ),
    )


# ---- gRPC servers (istiod grpcgen buildInboundListeners) -------------------------------------------------

SERVER_LISTENER_PREFIX = "xds.istio.io/grpc/lds/inbound/"  # istio-agent's grpcxds.ServerListenerNamePrefix
_GRPC_RBAC_ACTIONS = {rbac.RbacAction.DENY: f"{RBAC_FILTER}.DENY", rbac.RbacAction.ALLOW: RBAC_FILTER}


def _is_this_proxy(e: WorkloadEndpoint, svc: Service, proxy: ProxyIdentity) -> bool:
    """An endpoint of the proxy's namespace whose labels the proxy carries (istiod: the proxy's instances)."""
    mine = proxy.label_map
    namespace = mtls._we_namespace(e, svc.namespace)
    return namespace == proxy.namespace and bool(e.labels) and all(mine.get(k) == v for k, v in e.labels)


def served_ports(
    services: Iterable[Service], proxy: ProxyIdentity
) -> dict[int, tuple[Service, ServicePort, str]]:
    """The port the gRPC server listens on -> (service, service port, endpoint address) it serves there."""
    out: dict[int, tuple[Service, ServicePort, str]] = {}
    for svc, port in _http_ports(services):
        for e in svc.endpoints:
            if _is_this_proxy(e, svc, proxy):
                out.setdefault(e.port_for(port), (svc, port, e.address))
    return out


def server_listener_names(address: str, port: int) -> list[str]:
    """Names a server bound to the wildcard (either family) or to the endpoint's address asks for."""
    hosts = ["0.0.0.0", "[::]", f"[{address}]" if ":" in address else address]
    return [f"{SERVER_LISTENER_PREFIX}{h}:{port}" for h in dict.fromkeys(hosts)]


def server_mode(
    policies: SecurityPolicies,
    proxy: ProxyIdentity,
    svc: Service,
    port: ServicePort,
    listen_port: int,
    tls_available: bool,
) -> str:
    """STRICT or DISABLE. gRPC servers cannot tell TLS from plaintext on one port (gRFC A36 matches no
    transport_protocol), so PERMISSIVE is what clients are told: mTLS where the mesh's auto-mTLS makes them
    use it (istiod: the tlsMode=istio label), else plaintext."""
    mode = mtls.peer_mode(policies, proxy.namespace, proxy.label_map, listen_port)
    if mode == mtls.PERMISSIVE:
        auto = proxy.label_map.get(mtls.TLS_MODE_LABEL) == "istio" or mtls.service_uses_mtls(
            svc, port, policies
        )
        mode = mtls.STRICT if tls_available and auto else mtls.DISABLE
    return mode


def grpc_rbac_filters(policies: SecurityPolicies, proxy: ProxyIdentity) -> list[hcm.HttpFilter]:
    """DENY then ALLOW (gRPC refuses other actions: AUDIT and dry-run policies are left out, as istiod)."""
    out = []
    for config in rbac_configs(applicable(policies, proxy.namespace, proxy.label_map)):
        if config.rules is None or config.rules.action not in _GRPC_RBAC_ACTIONS:
            continue
        name = _GRPC_RBAC_ACTIONS[config.rules.action]
        out.append(hcm.HttpFilter(name=name, typed_config=AnyMsg.pack(http_rbac.Rbac(rules=config.rules))))
    return out


def server_listener(name: str, mode: str, filters: list[hcm.HttpFilter]) -> lis.Listener:
    host, _, port = name.removeprefix(SERVER_LISTENER_PREFIX).rpartition(":")
    manager = hcm.HttpConnectionManager(
        # inline (grpc-go#4924): one route that only lets the server's own handlers answer
        route_config=rte.RouteConfiguration(
            name="inbound",
            virtual_hosts=[
                rte.VirtualHost(
                    name="inbound",
                    domains=["*"],
                    routes=[
                        rte.Route(
                            match=rte.RouteMatch(prefix="/"), non_forwarding_action=rte.NonForwardingAction()
                        )
                    ],
                )
            ],
        ),
        http_filters=[*filters, ROUTER],
    )
    suffix = "mtls" if mode == mtls.STRICT else "plaintext"
    chain = lis.FilterChain(
        name=f"inbound-{suffix}",
        filters=[lis.Filter(name=f"inbound-hcm{suffix}", typed_config=AnyMsg.pack(manager))],
    )
    if mode == mtls.STRICT:
        context = tls.DownstreamTlsContext(
            common_tls_context=_grpc_common([]), require_client_certificate=True
        )
        chain.transport_socket = core.TransportSocket(name=TLS_SOCKET, typed_config=AnyMsg.pack(context))
    # gRPC checks the listener's address against the one it serves on; no listener filters (it NACKs them)
    return lis.Listener(name=name, address=socket(host.strip("[]"), int(port)), filter_chains=[chain])


def proxyless_server_listeners(
    services: Iterable[Service], proxy: ProxyIdentity, policies: SecurityPolicies, tls_available: bool
) -> list[lis.Listener]:
    filters = grpc_rbac_filters(policies, proxy)
    out = []
    for listen_port, (svc, port, address) in sorted(served_ports(services, proxy).items()):
        mode = server_mode(policies, proxy, svc, port, listen_port, tls_available)
        out += [server_listener(n, mode, filters) for n in server_listener_names(address, listen_port)]
    return out


def weighted_localities(body: bytes) -> ep.ClusterLoadAssignment:
    """A mesh ClusterLoadAssignment with a locality and a weight on every group: gRPC refuses a group without
    a locality and ignores one without load_balancing_weight (istiod sets it to the endpoint count)."""
    cla = ep.ClusterLoadAssignment.parse(body)
    for group in cla.endpoints:
        if group.locality is None:  # gRPC requires the field (istiod always sets it)
            group.locality = core.Locality()
        if not group.load_balancing_weight:
            group.load_balancing_weight = max(1, len(group.lb_endpoints))
    return cla


def grpc_bootstrap(
    proxy_id: str,
    server_uri: str,
    metadata: dict[str, Any],
    cert_dir: str | None = None,
) -> str:
    """The GRPC_XDS_BOOTSTRAP JSON of a proxyless workload.

    server_uri: the local agent's xDS socket (`unix:///…/xds.sock`: the agent adds the workload credential the
    control plane requires on every stream, as istio-agent does for proxyless clients), or host:port of a
    control plane started with --insecure-xds. cert_dir: where the agent writes cert-chain.pem, key.pem and
    root-cert.pem (gRPC's file_watcher certificate provider reads them for mTLS).
    """
    doc: dict[str, Any] = {
        "xds_servers": [
            {"server_uri": server_uri, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}
        ],
        "node": {"id": proxy_id, "cluster": proxy_id, "metadata": {"GENERATOR": "grpc", "mecha": metadata}},
        # what a grpc.server(xds=True) asks for, per address it listens on (istio-agent's grpcxds bootstrap)
        "server_listener_resource_name_template": f"{SERVER_LISTENER_PREFIX}%s",
    }
    if cert_dir:
        doc["certificate_providers"] = {
            CERT_PROVIDER: {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": f"{cert_dir}/cert-chain.pem",
                    "private_key_file": f"{cert_dir}/key.pem",
                    "ca_certificate_file": f"{cert_dir}/root-cert.pem",
                    "refresh_interval": "900s",
                },
            }
        }
    return json.dumps(doc, indent=2)
