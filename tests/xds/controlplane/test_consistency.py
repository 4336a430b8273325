"""An inconsistent snapshot (a listener naming a route table the snapshot lacks...) is not published: the
proxy keeps its last good snapshot and the error names the missing resource."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds import types
from xds.controlplane import consistency as c
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.translate.pack import field_number
from xds.types import Snapshot

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.7}]
"""
PROXY = ProxyIdentity.from_node(
    "web-1",
    {"mecha": {"mode": "sidecar", "namespace": "default", "outbound_port": 15001,
               "apps": [{"name": "web", "app_port": 8080, "inbound_port": 15006}]}},
)  # fmt: skip


def test_field_numbers_are_the_generated_messages() -> None:
    expected = {
        "LISTENER_FILTER_CHAINS": (lis.Listener, "filter_chains"),
        "LISTENER_DEFAULT_CHAIN": (lis.Listener, "default_filter_chain"),
        "LISTENER_API": (lis.Listener, "api_listener"),
        "API_LISTENER_ANY": (lis.ApiListener, "api_listener"),
        "CHAIN_FILTERS": (lis.FilterChain, "filters"),
        "CHAIN_TRANSPORT_SOCKET": (lis.FilterChain, "transport_socket"),
        "FILTER_TYPED_CONFIG": (lis.Filter, "typed_config"),
        "SOCKET_TYPED_CONFIG": (core.TransportSocket, "typed_config"),
        "ANY_TYPE_URL": (AnyMsg, "type_url"),
        "ANY_VALUE": (AnyMsg, "value"),
        "HCM_RDS": (hcm.HttpConnectionManager, "rds"),
        "RDS_NAME": (hcm.Rds, "route_config_name"),
        "CLUSTER_NAME": (clu.Cluster, "name"),
        "CLUSTER_TYPE": (clu.Cluster, "type"),
        "CLUSTER_EDS_CONFIG": (clu.Cluster, "eds_cluster_config"),
        "EDS_SERVICE_NAME": (clu.ClusterEdsClusterConfig, "service_name"),
        "CLUSTER_TRANSPORT_SOCKET": (clu.Cluster, "transport_socket"),
        "CLUSTER_SOCKET_MATCHES": (clu.Cluster, "transport_socket_matches"),
        "SOCKET_MATCH_SOCKET": (clu.ClusterTransportSocketMatch, "transport_socket"),
        "SCOPED_ROUTE_TABLE": (rte.ScopedRouteConfiguration, "route_configuration_name"),
        "SCOPED_ON_DEMAND": (rte.ScopedRouteConfiguration, "on_demand"),
        "TLS_COMMON": (tls.DownstreamTlsContext, "common_tls_context"),
        "COMMON_CERT_SDS": (tls.CommonTlsContext, "tls_certificate_sds_secret_configs"),
        "COMMON_VALIDATION_SDS": (tls.CommonTlsContext, "validation_context_sds_secret_config"),
        "COMMON_COMBINED": (tls.CommonTlsContext, "combined_validation_context"),
        "COMBINED_VALIDATION_SDS": (
            tls.CommonTlsContextCombinedCertificateValidationContext,
            "validation_context_sds_secret_config",
        ),
        "SDS_NAME": (tls.SdsSecretConfig, "name"),
        "SDS_CONFIG": (tls.SdsSecretConfig, "sds_config"),
        "CONFIG_SOURCE_ADS": (core.ConfigSource, "ads"),
    }
    assert {k: getattr(c, k) for k in expected} == {k: field_number(*v) for k, v in expected.items()}
    assert field_number(tls.UpstreamTlsContext, "common_tls_context") == c.TLS_COMMON
    assert c.CLUSTER_TYPE_EDS == clu.ClusterDiscoveryType.EDS.value
    assert c.HCM_TYPE == AnyMsg.pack(hcm.HttpConnectionManager()).type_url


class BreakingBuilder(SnapshotBuilder):
    """The real builder over `config` (not the empty store's), except that once `broken` it leaves out the
    route table it names."""

    broken = ""
    config: Any = None

    def build(self, _config: Any, *args: Any, **kwargs: Any) -> dict[str, Snapshot]:
        out = super().build(self.config, *args, **kwargs)
        if not self.broken:
            return out
        return {
            pid: Snapshot.build(
                r
                for m in snap.resources.values()
                for r in m.values()
                if not (r.type_url == types.ROUTE and r.name == self.broken)
            )
            for pid, snap in out.items()
        }


async def test_an_inconsistent_snapshot_is_not_published_and_the_last_good_one_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cp = ControlPlane(Settings(api_port=0, xds_port=0, state_dir=tmp_path, watch=False, insecure_xds=True))
    docs, diags = load_text(MESH, "mesh.yaml")
    result = compile_documents(docs)
    assert result.config is not None and not diags
    builder = cp.builder = BreakingBuilder()
    builder.config = result.config
    try:
        await cp._build_and_set([PROXY])
        good = cp.cache.get(PROXY.id)
        assert good is not None and "outbound" in good.of(types.ROUTE)
        builder.broken = "outbound"
        with caplog.at_level(logging.ERROR, logger="mecha.controlplane"):
            await cp._build_and_set([PROXY])
        assert cp.cache.get(PROXY.id) is good and cp.snapshot(PROXY.id) is good
        logged = [r.getMessage() for r in caplog.records if r.name == "mecha.controlplane"]
        assert len(logged) == 1
        assert "web-1" in logged[0] and "names RDS 'outbound', which is not in the snapshot" in logged[0]
        builder.broken = ""  # fixed: the next build is published
        await cp._build_and_set([PROXY])
        assert cp.cache.get(PROXY.id) is not good
    finally:
        await cp.store.close()


def test_an_unchanged_snapshot_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    docs, _ = load_text(MESH, "mesh.yaml")
    config = compile_documents(docs).config
    snap = SnapshotBuilder().build(config, [PROXY])[PROXY.id]
    c.check(PROXY.id, snap)
    calls: list[Snapshot] = []
    monkeypatch.setattr(c, "problems", lambda s: calls.append(s) or [])
    again = SnapshotBuilder().build(config, [PROXY])[PROXY.id]  # equal content, other objects
    c.check(PROXY.id, again, published=snap)
    assert calls == []


MUTUAL_WITHOUT_CA = (
    MESH
    + """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""
)


async def test_without_a_ca_an_istio_mutual_rule_does_not_stop_publishing(tmp_path: Path) -> None:
    """No CA: the workload secrets an ISTIO_MUTUAL cluster names are not the control plane's to serve, so
    that cluster alone stays unusable (as before the check) and the proxy's snapshot is still published."""
    docs, _ = load_text(MUTUAL_WITHOUT_CA, "mesh.yaml")
    config = compile_documents(docs).config
    snap = SnapshotBuilder().build(config, [PROXY])[PROXY.id]
    assert any("names SDS 'default'" in p for p in c.problems(snap))  # it does name them
    assert c.problems(snap, workload_secrets=False) == []
    cp = ControlPlane(Settings(api_port=0, xds_port=0, state_dir=tmp_path, watch=False, insecure_xds=True))
    assert cp.certs is None
    builder = cp.builder = BreakingBuilder()
    builder.config = config
    try:
        await cp._build_and_set([PROXY])
        assert cp.cache.get(PROXY.id) is not None
    finally:
        await cp.store.close()
