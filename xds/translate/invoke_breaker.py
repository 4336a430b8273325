"""Dapr circuit breakers for service invocation: one invoke cluster per target of a breaker.

A Resiliency's circuitBreaker on `targets.apps.<id>` becomes Envoy outlier detection. Outlier detection
lives on a cluster and the mesh's outbound clusters are shared by every caller, so a proxy whose Dapr
callers have a breaker gets a copy of the target's cluster (`invoke_cluster_name`, same endpoints,
same upstream TLS) with the breaker's outlier detection, and its invoke route points there
(`resiliency.apply`). Only single-destination routes get one (a VirtualService split keeps its clusters).
When two Dapr sites of one proxy (node mode) name different breakers for one target, the first wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.type import v3 as typ

from xds import types
from xds.model.mesh import MeshConfig
from xds.model.resources import Service
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.dapr_routes import app_ids, grpc_port, http_port, mesh_action
from xds.translate.dapr_sites import dapr_sites
from xds.translate.resiliency import (
    BreakerSpec,
    applicable,
    invoke_cluster_name,
    invoke_policy,
    outlier_detection,
    site_callers,
)
from xds.types import Resource


@dataclass(frozen=True, slots=True)
class BreakerTarget:
    name: str  # the invoke cluster
    source: str  # the outbound cluster the invoke route would use without the breaker
    spec: BreakerSpec


def breaker_targets(
    config: MeshConfig, route_config: MeshConfig, services: Iterable[Service], proxy: ProxyIdentity
) -> tuple[BreakerTarget, ...]:
    """The invoke clusters this proxy needs: one per (target, port) a breaker of its callers covers.
    route_config: the VS/DR set the proxy's routes see (its Sidecar/exportTo view)."""
    if not config.resiliencies or proxy.mode is ProxyMode.GATEWAY:
        return ()
    found: dict[str, BreakerTarget] = {}
    listed = tuple(services)
    for site in dapr_sites(proxy):
        callers = site_callers(proxy, site.route)
        chosen = applicable(config.resiliencies, site.namespace, callers)
        if not chosen:
            continue
        for svc in listed:
            policy = invoke_policy(chosen, app_ids(svc, svc.namespace))
            if policy is None or policy.breaker is None:
                continue
            port = grpc_port(svc) if site.grpc else http_port(svc)
            if port is None:
                continue
            source = mesh_action(svc, port, route_config).cluster
            name = invoke_cluster_name(svc.host, port.number)
            if source and name not in found:
                found[name] = BreakerTarget(name, source, policy.breaker)
    return tuple(found[n] for n in sorted(found))


def breaker_resources(
    targets: Iterable[BreakerTarget], clusters: Mapping[str, Resource], endpoints: Mapping[str, Resource]
) -> tuple[list[Resource], list[Resource]]:
    """(CDS, EDS) of the invoke clusters: copies of the source clusters (TLS included) and their
    endpoints, renamed, with the breaker's outlier detection. A source the proxy lacks gets none."""
    cds: list[Resource] = []
    eds: list[Resource] = []
    for t in targets:
        source = clusters.get(t.source)
        if source is None:
            continue
        cluster = clu.Cluster().parse(source.body)
        cluster.name = t.name
        cluster.outlier_detection = outlier_detection(t.spec)
        # no panic routing: an open breaker fails calls fast (503) instead of sending them anyway
        common = cluster.common_lb_config or clu.ClusterCommonLbConfig()
        common.healthy_panic_threshold = typ.Percent(value=0.0)
        cluster.common_lb_config = common
        if cluster.load_assignment is not None:
            cluster.load_assignment.cluster_name = t.name
        if cluster.eds_cluster_config is not None:
            cluster.eds_cluster_config.service_name = t.name
            cla_source = endpoints.get(t.source)
            cla = (
                ep.ClusterLoadAssignment().parse(cla_source.body)
                if cla_source
                else ep.ClusterLoadAssignment()
            )
            cla.cluster_name = t.name
            eds.append(Resource.make(types.ENDPOINT, t.name, bytes(cla)))
        cds.append(Resource.make(types.CLUSTER, t.name, bytes(cluster)))
    return cds, eds
