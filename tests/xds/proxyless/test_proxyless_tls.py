"""Proxyless gRPC clusters carry mesh mTLS (issue #14 item 9): where a sidecar's cluster is ISTIO_MUTUAL, the
proxyless client's cluster gets istiod grpcgen's UpstreamTlsContext, with certificates from the bootstrap's
file_watcher provider (the agent's files) instead of SDS, which gRPC refuses."""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import pipeline, types
from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.proxy import ProxyIdentity

MESH = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}, serviceAccount: greeter}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: plain, namespace: default}
spec:
  hosts: [plain]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50052, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
"""


def proxyless_clusters(with_ca: bool) -> dict[str, clu.Cluster]:
    docs, diags = pipeline.load_text(MESH, "mesh.yaml")
    result = pipeline.compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*diags, *result.diagnostics]]
    options: dict[str, Any] = {}
    if with_ca:
        options = {"certs": WorkloadCertificates(CertificateAuthority("cluster.local")), "agent_sds": True}
    builder = pipeline.SnapshotBuilder(**options)
    client = ProxyIdentity.from_node("client-1", {"GENERATOR": "grpc", "mecha": {"namespace": "default"}})
    snapshot = builder.build(result.config, [client])["client-1"]
    return {n: clu.Cluster.parse(r.body) for n, r in snapshot.resources[types.CLUSTER].items()}


def tls_of(cluster: clu.Cluster) -> tls.UpstreamTlsContext | None:
    if cluster.transport_socket is None:
        return None
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    return tls.UpstreamTlsContext.parse(cluster.transport_socket.typed_config.value)


def test_istio_mutual_cluster_uses_the_file_watcher_provider() -> None:
    clusters = proxyless_clusters(with_ca=True)
    for name in (
        "outbound|50051||greeter.default.svc.cluster.local",
        "outbound|50051|v1|greeter.default.svc.cluster.local",
    ):
        context = tls_of(clusters[name])
        assert context is not None, name
        common = context.common_tls_context
        assert common.tls_certificate_sds_secret_configs == []  # gRPC NACKs SDS
        mine = common.tls_certificate_provider_instance
        assert (mine.instance_name, mine.certificate_name) == ("default", "default")
        combined = common.combined_validation_context
        assert combined.validation_context_sds_secret_config is None
        root = combined.default_validation_context.ca_certificate_provider_instance
        assert (root.instance_name, root.certificate_name) == ("default", "ROOTCA")
        sans = [s.exact for s in combined.default_validation_context.match_subject_alt_names]
        assert sans == ["spiffe://cluster.local/ns/default/sa/greeter"]
        assert context.sni.startswith("outbound_.50051_.")


def test_plaintext_clusters_stay_plaintext() -> None:
    assert tls_of(proxyless_clusters(with_ca=True)["outbound|50052||plain.default.svc.cluster.local"]) is None


TIMEOUT_VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  http: [{route: [{destination: {host: greeter}}], timeout: 2s}]
"""


def test_route_timeout_reaches_grpc_as_max_stream_duration() -> None:
    """gRPC ignores RouteAction.timeout: istiod copies it to max_stream_duration for proxyless clients."""
    from datetime import timedelta

    from envoy_data_plane.envoy.config.route import v3 as rte

    docs, _ = pipeline.load_text(MESH + "---\n" + TIMEOUT_VS, "mesh.yaml")
    result = pipeline.compile_documents(docs)
    assert result.config is not None
    client = ProxyIdentity.from_node("client-1", {"GENERATOR": "grpc", "mecha": {"namespace": "default"}})
    snapshot = pipeline.SnapshotBuilder().build(result.config, [client])["client-1"]
    routes = {n: rte.RouteConfiguration.parse(r.body) for n, r in snapshot.resources[types.ROUTE].items()}
    action = routes["greeter.default.svc.cluster.local:50051"].virtual_hosts[0].routes[0].route
    assert action.max_stream_duration is not None
    assert action.max_stream_duration.max_stream_duration == timedelta(seconds=2)
    assert action.max_stream_duration.grpc_timeout_header_max == timedelta(seconds=2)
    plain = routes["plain.default.svc.cluster.local:50052"].virtual_hosts[0].routes[0].route
    assert plain.max_stream_duration is None  # no timeout: none imposed
