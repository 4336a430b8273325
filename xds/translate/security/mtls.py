"""Mesh mTLS: SPIFFE identities, PeerAuthentication modes, and the TLS contexts istiod builds.

Server side (inbound listener): STRICT = one TLS chain requiring a client certificate signed by ROOTCA;
PERMISSIVE = tls_inspector picks a TLS or a plaintext chain; DISABLE = plaintext only. Client side
(auto-mTLS, istio-mapping.md §2): clusters of in-mesh services (every endpoint is a WorkloadEntry, i.e. a
proxy's inbound listener, none in DISABLE) get an ISTIO_MUTUAL UpstreamTlsContext with the peers' SANs.
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.envoy.type.matcher import v3 as m
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.mesh import MeshConfig
from xds.model.meta import Labels
from xds.model.resources import Service, ServicePort, WorkloadEndpoint
from xds.model.security import ROOT_NAMESPACE, SecurityPolicies, selects
from xds.proxy import AppBinding, ProxyIdentity
from xds.spiffe import ROOT_SECRET, WORKLOAD_SECRET, spiffe_id
from xds.translate.envoy_core import ADS

STRICT, PERMISSIVE, DISABLE = "STRICT", "PERMISSIVE", "DISABLE"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_MODE_LABEL = "security.istio.io/tlsMode"
ALPN_IN_MESH = ["istio-peer-exchange", "istio"]  # istiod util.ALPNInMeshWithMxc
ALPN_INBOUND = ["h2", "http/1.1"]


def sni(port: int, subset: str, host: str) -> str:
    return f"outbound_.{port}_.{subset}_.{host}"


# ---- identities ----------------------------------------------------------------------------------------


def _we_namespace(e: WorkloadEndpoint, default: str) -> str:
    kind, _, ref = e.source.partition(" ")
    return ref.split("/", 1)[0] if kind == "WorkloadEntry" and "/" in ref else default


def _service_account(labels: dict[str, str], explicit: str, fallback: str) -> str:
    return explicit or labels.get("app") or fallback


def app_service_account(app: AppBinding, config: MeshConfig) -> str:
    """WorkloadEntry.serviceAccount of the app's WorkloadEntry (labels match), else app label, else name."""
    mine = app.label_map
    for we in config.workload_entries:
        e = we.endpoint
        if we.meta.namespace == app.namespace and e.labels and all(mine.get(k) == v for k, v in e.labels):
            explicit = str(getattr(e, "service_account", "") or "")
            if explicit:
                return explicit
    return _service_account(mine, "", app.name)


def proxy_spiffe_ids(proxy: ProxyIdentity, config: MeshConfig, trust_domain: str) -> tuple[str, ...]:
    """One SAN per fronted app (node mode fronts several); a gateway is its labels' app or its id."""
    ids: list[str] = []
    for app in proxy.apps:
        sid = spiffe_id(trust_domain, app.namespace, app_service_account(app, config))
        if sid not in ids:
            ids.append(sid)
    if not ids:
        ids.append(spiffe_id(trust_domain, proxy.namespace, _service_account(proxy.label_map, "", proxy.id)))
    return tuple(ids)


def endpoint_spiffe_id(e: WorkloadEndpoint, service: Service, trust_domain: str) -> str:
    labels = dict(e.labels)
    explicit = str(getattr(e, "service_account", "") or "")
    name = e.source.rpartition("/")[2] or service.short_name
    return spiffe_id(
        trust_domain, _we_namespace(e, service.namespace), _service_account(labels, explicit, name)
    )


# ---- PeerAuthentication --------------------------------------------------------------------------------


def peer_mode(
    policies: SecurityPolicies, namespace: str, labels: Labels | dict[str, str], port: int | None
) -> str:
    """istiod ComposePeerAuthentication: mesh < namespace < workload (< its portLevelMtls); UNSET inherits;
    no policy at all = PERMISSIVE. Within a scope the first by name wins (istiod: the oldest)."""
    mesh = ns = workload = None
    for p in policies.peer:  # sorted by (namespace, name)
        if p.selector is None:
            if p.meta.namespace == namespace and ns is None:
                ns = p
            elif p.meta.namespace == ROOT_NAMESPACE and mesh is None:
                mesh = p
        elif workload is None and selects(p.selector, p.meta.namespace, namespace, labels):
            if p.meta.namespace == namespace:
                workload = p
    mode = PERMISSIVE
    for scope in (mesh, ns, workload):
        if scope is not None and scope.mode != "UNSET":
            mode = scope.mode
    if workload is not None and port is not None:
        for number, port_mode in workload.port_modes:
            if number == port and port_mode != "UNSET":
                mode = port_mode
    return mode


# ---- TLS contexts --------------------------------------------------------------------------------------


# With agents (xds/agent/), workload secrets come from the proxy's own agent over a Unix socket (istio-agent's
# `sds-grpc` bootstrap cluster): the control plane sends references only, never a key.
SDS_CLUSTER = "sds-grpc"
AGENT_SDS = core.ConfigSource(
    api_config_source=core.ApiConfigSource(
        api_type=core.ApiConfigSourceApiType.GRPC,
        transport_api_version=core.ApiVersion.V3,
        grpc_services=[core.GrpcService(envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name=SDS_CLUSTER))],
        set_node_on_first_message_only=True,
    ),
    resource_api_version=core.ApiVersion.V3,
)


def _sds(name: str, source: core.ConfigSource = ADS) -> tls.SdsSecretConfig:
    return tls.SdsSecretConfig(name=name, sds_config=source)


def _common(alpn: list[str], sans: list[str], sds: core.ConfigSource = ADS) -> tls.CommonTlsContext:
    san_matchers = [
        tls.SubjectAltNameMatcher(
            san_type=tls.SubjectAltNameMatcherSanType.URI, matcher=m.StringMatcher(exact=s)
        )
        for s in sans
    ]
    return tls.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(WORKLOAD_SECRET, sds)],
        combined_validation_context=tls.CommonTlsContextCombinedCertificateValidationContext(
            default_validation_context=tls.CertificateValidationContext(
                match_typed_subject_alt_names=san_matchers
            ),
            validation_context_sds_secret_config=_sds(ROOT_SECRET, sds),
        ),
        alpn_protocols=alpn,
    )


def downstream_transport_socket(sds: core.ConfigSource = ADS) -> core.TransportSocket:
    ctx = tls.DownstreamTlsContext(
        common_tls_context=_common(ALPN_INBOUND, [], sds), require_client_certificate=True
    )
    return core.TransportSocket(name=TLS_SOCKET, typed_config=AnyMsg.pack(ctx))


def upstream_transport_socket(
    port: int, subset: str, host: str, sans: list[str], sni_name: str = "", sds: core.ConfigSource = ADS
) -> core.TransportSocket:
    ctx = tls.UpstreamTlsContext(
        common_tls_context=_common(ALPN_IN_MESH, sans, sds), sni=sni_name or sni(port, subset, host)
    )
    return core.TransportSocket(name=TLS_SOCKET, typed_config=AnyMsg.pack(ctx))


# ---- auto-mTLS decision ---------------------------------------------------------------------------------


def _is_mesh_endpoint(e: WorkloadEndpoint) -> bool:
    return e.source.startswith("WorkloadEntry ") and dict(e.labels).get(TLS_MODE_LABEL, "istio") != "disabled"


def service_uses_mtls(service: Service, port: ServicePort, policies: SecurityPolicies) -> bool:
    """Every endpoint is a mesh proxy whose effective mode on that port is not DISABLE."""
    if service.mesh_external or service.resolution != "STATIC" or not service.endpoints:
        return False
    for e in service.endpoints:
        if not _is_mesh_endpoint(e):
            return False
        ns = _we_namespace(e, service.namespace)
        if peer_mode(policies, ns, e.labels, e.port_for(port)) == DISABLE:
            return False
    return True


def service_sans(
    service: Service, trust_domain: str, verified: tuple[tuple[str, tuple[str, ...]], ...] = ()
) -> list[str]:
    """The endpoints' identities; verified: endpoint source -> the service accounts of the credentials of
    the connected proxies serving it (xds/identity/peers.py), which win over the WorkloadEntry's."""
    by_source = dict(verified)
    out: set[str] = set()
    for e in service.endpoints:
        accounts = by_source.get(e.source)
        if accounts:
            ns = _we_namespace(e, service.namespace)
            out.update(spiffe_id(trust_domain, ns, account) for account in accounts)
        else:
            out.add(endpoint_spiffe_id(e, service, trust_domain))
    return sorted(out)
