"""Hand-built Envoy resources (envoy_data_plane) for tests and benchmarks: tiny mesh-like snapshots."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.config.listener import v3 as lis
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.http.router import v3 as router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.type.matcher import v3 as matcher
from envoy_data_plane.google.protobuf import Any

from xds import types
from xds.cache.snapshot import Resource, Snapshot

ADS = core.ConfigSource(ads=core.AggregatedConfigSource(), resource_api_version=core.ApiVersion.V3)


def config_source(xds_cluster: str | None = None) -> core.ConfigSource:
    """ADS, or (per-type streams) a gRPC api_config_source pointing at the static xDS cluster."""
    if xds_cluster is None:
        return ADS
    return core.ConfigSource(
        api_config_source=core.ApiConfigSource(
            api_type=core.ApiConfigSourceApiType.GRPC,
            transport_api_version=core.ApiVersion.V3,
            grpc_services=[core.GrpcService(envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name=xds_cluster))],
        ),
        resource_api_version=core.ApiVersion.V3,
    )


def _sock(host: str, port: int) -> core.Address:
    return core.Address(socket_address=core.SocketAddress(address=host, port_value=port))


def cluster(name: str, xds_cluster: str | None = None) -> Resource:
    """An EDS cluster fed over ADS (or per-type EDS from xds_cluster)."""
    msg = clu.Cluster(
        name=name,
        type=clu.ClusterDiscoveryType.EDS,
        connect_timeout=datetime.timedelta(seconds=1),
        eds_cluster_config=clu.ClusterEdsClusterConfig(eds_config=config_source(xds_cluster)),
    )
    return Resource.make(types.CLUSTER, name, bytes(msg))


def endpoints(name: str, ports: Iterable[int], host: str = "127.0.0.1") -> Resource:
    """A ClusterLoadAssignment with one endpoint per port."""
    msg = ep.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            ep.LocalityLbEndpoints(
                lb_endpoints=[ep.LbEndpoint(endpoint=ep.Endpoint(address=_sock(host, p))) for p in ports]
            )
        ],
    )
    return Resource.make(types.ENDPOINT, name, bytes(msg))


def http_listener(
    name: str, port: int, route_name: str, host: str = "127.0.0.1", xds_cluster: str | None = None
) -> Resource:
    """An HTTP listener whose routes come over RDS (route_name), via ADS or per-type from xds_cluster."""
    mgr = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(config_source=config_source(xds_cluster), route_config_name=route_name),
        http_filters=[
            hcm.HttpFilter(name="envoy.filters.http.router", typed_config=Any.pack(router.Router()))
        ],
    )
    msg = lis.Listener(
        name=name,
        address=_sock(host, port),
        filter_chains=[
            lis.FilterChain(
                filters=[
                    lis.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=Any.pack(mgr)
                    )
                ]
            )
        ],
    )
    return Resource.make(types.LISTENER, name, bytes(msg))


def route_config(name: str, routes: Iterable[tuple[str, str]], regex: str | None = None) -> Resource:
    """RouteConfiguration with one virtual host "*": (prefix, cluster) pairs in order.

    regex adds a first route matching that safe_regex (to a 404-less cluster of the first pair): use "(?=x)",
    which RE2 rejects, to make Envoy NACK the resource.
    """
    pairs = list(routes)
    out = []
    if regex is not None:
        out.append(
            rte.Route(
                match=rte.RouteMatch(safe_regex=matcher.RegexMatcher(regex=regex)),
                route=rte.RouteAction(cluster=pairs[0][1]),
            )
        )
    out.extend(
        rte.Route(match=rte.RouteMatch(prefix=prefix), route=rte.RouteAction(cluster=target))
        for prefix, target in pairs
    )
    msg = rte.RouteConfiguration(
        name=name, virtual_hosts=[rte.VirtualHost(name="all", domains=["*"], routes=out)]
    )
    return Resource.make(types.ROUTE, name, bytes(msg))


def simple_snapshot(
    listen_port: int,
    backends: dict[str, int],
    route_to: str,
    regex: str | None = None,
    config_version: str = "",
    changed_at: float = 0.0,
    xds_cluster: str | None = None,
) -> Snapshot:
    """One listener on listen_port, route "/" -> cluster route_to, one cluster per backend (name -> port).
    xds_cluster: serve EDS/RDS per type from that static cluster instead of ADS."""
    res: list[Resource] = [http_listener("listener_0", listen_port, "local_route", xds_cluster=xds_cluster)]
    res.append(route_config("local_route", [("/", route_to)], regex=regex))
    for name, port in backends.items():
        res.append(cluster(name, xds_cluster))
        res.append(endpoints(name, [port]))
    return Snapshot.build(res, changed_at=changed_at, config_version=config_version)


def mesh_resources(services: int, route_target: str | None = None) -> list[Resource]:
    """A synthetic mesh: `services` EDS clusters + CLAs, one outbound listener, one RouteConfiguration
    with a route per service (prefix /svcN -> svcN; "/" -> route_target or svc0)."""
    res: list[Resource] = []
    for i in range(services):
        name = f"svc{i}"
        res.append(cluster(name))
        res.append(endpoints(name, [20000 + i % 1000]))
    routes = [(f"/svc{i}/", f"svc{i}") for i in range(services)]
    routes.append(("/", route_target or "svc0"))
    res.append(route_config("outbound", routes))
    res.append(http_listener("outbound", 15001, "outbound"))
    return res
