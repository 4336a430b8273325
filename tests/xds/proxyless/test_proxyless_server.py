"""Proxyless gRPC servers (issue #14 item 9): a grpc.server(xds=True) asks for
`xds.istio.io/grpc/lds/inbound/<ip>:<port>`; istiod grpcgen answers with one filter chain whose mTLS comes
from PeerAuthentication (gRPC cannot serve PERMISSIVE on one port) and RBAC limited to ALLOW / DENY."""

from __future__ import annotations

import json
from typing import Any

from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.extensions.filters.http.rbac import v3 as http_rbac
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import pipeline, types
from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.proxy import ProxyIdentity
from xds.translate.proxyless import grpc_bootstrap

MESH = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: greeter}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: default}
spec:
  address: 10.0.0.7
  ports: {grpc: 17070}
  labels: {app: greeter, version: v1}
  serviceAccount: greeter
"""
INBOUND = "xds.istio.io/grpc/lds/inbound/"
NAMES = [f"{INBOUND}0.0.0.0:17070", f"{INBOUND}[::]:17070", f"{INBOUND}10.0.0.7:17070"]


def policy(kind: str, spec: str) -> str:
    head = f"---\napiVersion: security.istio.io/v1\nkind: {kind}\n"
    return head + f"metadata: {{name: p, namespace: default}}\n{spec}"


def server_listeners(extra: str = "", with_ca: bool = True, proxy_id: str = "greeter-v1") -> dict[str, Any]:
    docs, diags = pipeline.load_text(MESH + extra, "mesh.yaml")
    result = pipeline.compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*diags, *result.diagnostics]]
    options: dict[str, Any] = {}
    if with_ca:
        options = {"certs": WorkloadCertificates(CertificateAuthority("cluster.local")), "agent_sds": True}
    labels = {"app": "greeter", "version": "v1"} if proxy_id == "greeter-v1" else {"app": "client"}
    meta = {"GENERATOR": "grpc", "mecha": {"namespace": "default", "labels": labels}}
    server = ProxyIdentity.from_node(proxy_id, meta)
    snapshot = pipeline.SnapshotBuilder(**options).build(result.config, [server])[proxy_id]
    inbound = {
        n: lis.Listener.parse(r.body)
        for n, r in snapshot.resources[types.LISTENER].items()
        if n.startswith(INBOUND)
    }
    assert sorted(inbound) == (sorted(NAMES) if proxy_id == "greeter-v1" else [])
    return inbound


def chain_of(listener: lis.Listener) -> tuple[lis.FilterChain, hcm.HttpConnectionManager]:
    assert len(listener.filter_chains) == 1 and not listener.listener_filters  # gRPC NACKs listener filters
    chain = listener.filter_chains[0]
    return chain, hcm.HttpConnectionManager.parse(chain.filters[0].typed_config.value)


def test_server_listener_per_address_the_server_may_bind() -> None:
    listeners = server_listeners()
    assert sorted(listeners) == sorted(NAMES)
    for name, listener in listeners.items():
        address = listener.address.socket_address
        assert f"{address.address}:{address.port_value}" in name.replace("[", "").replace("]", "")
        _, manager = chain_of(listener)
        route = manager.route_config.virtual_hosts[0].routes[0]
        assert route.non_forwarding_action is not None
        assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]


def test_other_proxies_get_no_server_listener() -> None:
    assert server_listeners(proxy_id="client-1") == {}


def _server_tls(listener: lis.Listener) -> tls.DownstreamTlsContext | None:
    chain, _ = chain_of(listener)
    if chain.transport_socket is None:
        return None
    return tls.DownstreamTlsContext.parse(chain.transport_socket.typed_config.value)


def test_auto_mtls_serves_mtls_from_the_file_watcher_provider() -> None:
    """PERMISSIVE (no policy), CA on: clients use auto-mTLS to this WorkloadEntry, so the server does."""
    for listener in server_listeners().values():
        context = _server_tls(listener)
        assert context is not None
        assert context.require_client_certificate is True
        common = context.common_tls_context
        assert common.tls_certificate_sds_secret_configs == []  # gRPC NACKs SDS
        mine = common.tls_certificate_provider_instance
        assert (mine.instance_name, mine.certificate_name) == ("default", "default")
        root = common.combined_validation_context.default_validation_context.ca_certificate_provider_instance
        assert (root.instance_name, root.certificate_name) == ("default", "ROOTCA")


def test_without_ca_permissive_is_plaintext_and_strict_stays_tls() -> None:
    assert all(_server_tls(x) is None for x in server_listeners(with_ca=False).values())
    strict = server_listeners(policy("PeerAuthentication", "spec: {mtls: {mode: STRICT}}"), with_ca=False)
    assert all(_server_tls(x) is not None for x in strict.values())  # never plaintext under STRICT


def test_disable_and_port_level_modes() -> None:
    disabled = server_listeners(policy("PeerAuthentication", "spec: {mtls: {mode: DISABLE}}"))
    assert all(_server_tls(x) is None for x in disabled.values())
    port_level = """spec:
  selector: {matchLabels: {app: greeter}}
  mtls: {mode: STRICT}
  portLevelMtls: {17070: {mode: DISABLE}}
"""
    assert all(
        _server_tls(x) is None for x in server_listeners(policy("PeerAuthentication", port_level)).values()
    )


def test_authorization_policies_become_deny_then_allow_rbac() -> None:
    allow = """spec:
  selector: {matchLabels: {app: greeter}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]}]
"""
    deny = policy("AuthorizationPolicy", allow.replace("ALLOW", "DENY").replace("sa/client", "sa/evil"))
    audit = policy("AuthorizationPolicy", allow.replace("ALLOW", "AUDIT")).replace("name: p", "name: a")
    listeners = server_listeners(
        policy("AuthorizationPolicy", allow).replace("name: p", "name: q") + deny + audit
    )
    _, manager = chain_of(listeners[NAMES[0]])
    names = [f.name for f in manager.http_filters]
    assert names == ["envoy.filters.http.rbac.DENY", "envoy.filters.http.rbac", "envoy.filters.http.router"]
    allow_rbac = http_rbac.Rbac.parse(manager.http_filters[1].typed_config.value)
    principal = next(iter(allow_rbac.rules.policies.values())).principals[0].and_ids.ids[0].or_ids.ids[0]
    assert principal.authenticated.principal_name.exact == "spiffe://cluster.local/ns/default/sa/client"
    assert allow_rbac.shadow_rules is None


def test_bootstrap_names_the_server_listener_template() -> None:
    doc = json.loads(grpc_bootstrap("greeter-v1", "unix:///run/xds.sock", {"namespace": "default"}))
    assert doc["server_listener_resource_name_template"] == INBOUND + "%s"
