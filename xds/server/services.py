"""The xDS gRPC services and the server's keepalive policy: names only, so the agent (which proxies ADS and
serves SDS on a sidecar's start path) reads them without importing the control plane's server, its metrics
and caches."""

from __future__ import annotations

from xds import types

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
# service -> (SotW method, delta method, type URL); None = ADS (every type on one stream)
SERVICES: dict[str, tuple[str, str, str | None]] = {
    ADS_SERVICE: ("StreamAggregatedResources", "DeltaAggregatedResources", None),
    "envoy.service.cluster.v3.ClusterDiscoveryService": ("StreamClusters", "DeltaClusters", types.CLUSTER),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (
        "StreamEndpoints",
        "DeltaEndpoints",
        types.ENDPOINT,
    ),
    "envoy.service.listener.v3.ListenerDiscoveryService": (
        "StreamListeners",
        "DeltaListeners",
        types.LISTENER,
    ),
    "envoy.service.route.v3.RouteDiscoveryService": ("StreamRoutes", "DeltaRoutes", types.ROUTE),
    "envoy.service.route.v3.ScopedRoutesDiscoveryService": (
        "StreamScopedRoutes",
        "DeltaScopedRoutes",
        types.SCOPED_ROUTE,
    ),
    "envoy.service.secret.v3.SecretDiscoveryService": ("StreamSecrets", "DeltaSecrets", types.SECRET),
}

# Envoy's xDS cluster pings every 10 s (connection_keepalive in envoy/bootstrap.yaml) to notice a dead or
# frozen control plane. gRPC's server defaults (5 min between pings without data, 2 strikes) answer that with
# GOAWAY too_many_pings about every 40 s, dropping every proxy. Accept one ping per 5 s (half the bootstrap
# interval) even without an open call; faster pings still count as strikes, so a ping flood is still cut off.
# The server pings too (every 30 s, 10 s to answer) so a frozen or vanished proxy's stream ends and its state
# is freed; max_pings_without_data=0 keeps those pings going on an idle stream.
KEEPALIVE_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)
