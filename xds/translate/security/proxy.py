"""Per-proxy security output for the SnapshotBuilder: secure inbound listeners, auto-mTLS clusters, secrets.

Without a CA and without security policies nothing changes (the plain listeners and clusters are kept, so
configs that do not use security translate exactly as before).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector import v3 as tls_inspector
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.security import SecurityPolicies, security_policies
from xds.proxy import AppBinding, ProxyIdentity, ProxyMode
from xds.spiffe import DEFAULT_TRUST_DOMAIN
from xds.translate.envoy_core import ADS, socket
from xds.translate.listener import (
    HCM_NAME,
    ROUTER,
    inbound_route_name,
    inbound_tcp_filter,
    shared_manager_fields,
)
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization
from xds.translate.pack import Memo, field_bytes, field_number
from xds.translate.security import mtls, upstream
from xds.translate.security.jwt import authn_http_filters
from xds.translate.security.rbac import rbac_http_filters, rbac_network_filters
from xds.types import Resource

_TRANSPORT_SOCKET = field_number(clu.Cluster, "transport_socket")
TLS_INSPECTOR = lis.ListenerFilter(
    name="envoy.filters.listener.tls_inspector", typed_config=AnyMsg.pack(tls_inspector.TlsInspector())
)


def inbound_listener(
    proxy: ProxyIdentity,
    app: AppBinding,
    mode: str,
    tls_available: bool,
    filters: list[hcm.HttpFilter],
    normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
    sds: core.ConfigSource = ADS,
    tcp_filters: list[lis.Filter] | None = None,
) -> lis.Listener:
    """tcp_filters: network filters (RBAC) before the TCP proxy of a TCP-family app (`app.is_tcp`)."""
    tcp_filters = tcp_filters or []
    assert app.inbound_port is not None
    port = app.inbound_port
    manager = hcm.HttpConnectionManager(
        stat_prefix=f"inbound_0.0.0.0_{port}",
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        rds=hcm.Rds(config_source=ADS, route_config_name=inbound_route_name(app)),
        http_filters=[*filters, ROUTER],
        # the app sees its caller (x-forwarded-client-cert with the peer's SPIFFE URI); forged ones dropped
        forward_client_cert_details=hcm.HttpConnectionManagerForwardClientCertDetails.SANITIZE_SET,
        set_current_client_cert_details=hcm.HttpConnectionManagerSetCurrentClientCertDetails(uri=True),
        **shared_manager_fields(normalization),  # RBAC matches the path the app is given
    )
    chain_filters = [lis.Filter(name=HCM_NAME, typed_config=AnyMsg.pack(manager))]
    if app.is_tcp:  # TCP-family port: network RBAC (as istiod) before the TCP proxy, no HTTP codec
        chain_filters = [*tcp_filters, inbound_tcp_filter(app)]
    tls_chain = lis.FilterChain(
        name="tls", filters=chain_filters, transport_socket=mtls.downstream_transport_socket(sds)
    )
    plain_chain = lis.FilterChain(name="plaintext", filters=chain_filters)
    listener_filters: list[lis.ListenerFilter] = []
    if mode == mtls.STRICT:
        chains = [tls_chain]  # even without a CA: no certificate means no handshake, never plaintext
    elif mode == mtls.PERMISSIVE and tls_available:
        tls_chain.filter_chain_match = lis.FilterChainMatch(transport_protocol="tls")
        plain_chain.filter_chain_match = lis.FilterChainMatch(transport_protocol="raw_buffer")
        chains = [tls_chain, plain_chain]
        listener_filters = [TLS_INSPECTOR]
    else:
        chains = [plain_chain]
    return lis.Listener(
        name=f"virtualInbound_{port}",
        address=socket(proxy.address, port),
        filter_chains=chains,
        listener_filters=listener_filters,
        traffic_direction=core.TrafficDirection.INBOUND,
    )


class SecurityTranslator:
    def __init__(
        self,
        memo: Memo,
        trust_domain: str | None = None,
        normalization: PathNormalization = DEFAULT_PATH_NORMALIZATION,
        agent_sds: bool = False,
    ) -> None:
        """trust_domain: the mesh CA's; given = mesh mTLS is on (SDS, auto-mTLS), None = no CA.
        agent_sds: every proxy has a `mecha agent` holding its key; TLS contexts reference the agent's SDS
        and the control plane serves no workload secret."""
        self.memo = memo
        self.trust_domain = trust_domain
        self.agent_sds = agent_sds
        self.sds = mtls.AGENT_SDS if agent_sds else ADS
        self.normalization = normalization
        # endpoint source -> service accounts of the credentials of the connected proxies serving it: the
        # SANs clients expect (xds/identity/peers.py; set by the control plane before each build)
        self.endpoint_accounts: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def policies(self, config: MeshConfig) -> SecurityPolicies:
        return security_policies(config.carried, config.inputs.jwks_texts())

    # ---- LDS -------------------------------------------------------------------------------------------
    def listeners(self, config: MeshConfig, proxy: ProxyIdentity, plain: list[Resource]) -> list[Resource]:
        """The proxy's listeners with inbound ones replaced when mTLS or a policy applies to the app."""
        if proxy.mode is ProxyMode.GATEWAY:
            return plain
        policies = self.policies(config)
        if self.trust_domain is None and policies.empty:
            return plain
        tls_available = self.trust_domain is not None

        def build() -> list[Resource]:
            replaced: dict[str, Resource] = {}
            for app in proxy.apps:
                if app.inbound_port is None or app.app_port is None:
                    continue
                # the workload's labels: the proxy's (a sidecar's pod labels) under the app's own, as the
                # other selectors read them; an app without labels must not fall outside every policy
                labels = {**proxy.label_map, **app.label_map}
                mode = mtls.peer_mode(policies, app.namespace, labels, app.inbound_port)
                filters = authn_http_filters(policies, app.namespace, labels, config)
                filters += rbac_http_filters(policies, app.namespace, labels)
                tcp_rbac = rbac_network_filters(policies, app.namespace, labels) if app.is_tcp else []
                if not tls_available and mode != mtls.STRICT and not filters and not tcp_rbac:
                    continue
                listener = inbound_listener(
                    proxy, app, mode, tls_available, filters, self.normalization, self.sds, tcp_rbac
                )
                replaced[listener.name] = Resource.make(types.LISTENER, listener.name, bytes(listener))
            return [replaced.get(r.name, r) for r in plain]

        inputs = (proxy, policies, tls_available, config.services, *plain)
        return self.memo.get(("sec-lds", proxy.id), inputs, build)

    # ---- CDS (DestinationRule tls, auto-mTLS) ----------------------------------------------------------
    def clusters(self, config: MeshConfig, clusters: list[Resource]) -> list[Resource]:
        if self.trust_domain is None and not upstream.any_client_tls(config):
            return clusters
        policies = self.policies(config)
        td = self.trust_domain or DEFAULT_TRUST_DOMAIN
        auto = self.trust_domain is not None
        out: list[Resource] = []
        for r in clusters:
            direction, port_s, subset, host = [*r.name.split("|"), "", "", ""][:4]
            svc = config.service_by_host.get(host)
            port = (
                svc.port(int(port_s))
                if svc is not None and direction == "outbound" and port_s.isdigit()
                else None
            )
            if svc is None or port is None:
                out.append(r)
                continue
            rule = config.rule_by_host.get(svc.host)
            out.append(
                self.memo.get(
                    ("mtls-cluster", r.name),
                    (r, svc, policies, td, rule, auto, self.endpoint_accounts),
                    partial(
                        self._secure,
                        r,
                        svc,
                        port,
                        subset,
                        policies,
                        td,
                        rule,
                        auto,
                        self.sds,
                        self.endpoint_accounts,
                    ),
                )
            )
        return out

    @staticmethod
    def _secure(  # type: ignore[no-untyped-def]
        r: Resource,
        svc,
        port,
        subset: str,
        policies: SecurityPolicies,
        td: str,
        rule,
        auto: bool,
        sds,
        verified: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> Resource:
        settings = upstream.effective_tls(rule, subset, port.number)
        if settings is not None:  # an explicit DestinationRule tls wins over auto-mTLS
            sock = upstream.transport_socket(settings, svc, port.number, subset, td, sds, verified)
        elif auto and mtls.service_uses_mtls(svc, port, policies):
            sans = upstream.mesh_sans(svc, td, verified)
            sock = mtls.upstream_transport_socket(port.number, subset, svc.host, sans, sds=sds)
        else:
            sock = None
        if sock is None:
            return r
        return Resource.make(types.CLUSTER, r.name, r.body + field_bytes(_TRANSPORT_SOCKET, bytes(sock)))

    # ---- SDS -------------------------------------------------------------------------------------------
    def serves_workload_secrets(self) -> bool:
        """The control plane serves `default` + `ROOTCA` (with agents the key never leaves the workload)."""
        return self.trust_domain is not None and not self.agent_sds

    def secrets(self, proxy: ProxyIdentity, issued: Mapping[str, tuple[Resource, ...]]) -> list[Resource]:
        """The proxy's workload secrets, issued before the build (none when they are not served here)."""
        return list(issued.get(proxy.id, ())) if self.serves_workload_secrets() else []
