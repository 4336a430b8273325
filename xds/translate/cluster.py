"""CDS: outbound clusters per service port and subset (DestinationRule traffic policy), inbound and
capability clusters. Hot path: clusters sharing a traffic policy share one serialized 'policy body'; only
the name and EDS service_name are encoded per cluster (protobuf fields concatenate)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from envoy_data_plane.envoy.type import v3 as typ

from xds.model.resources import (
    ConnectionPool,
    DestinationRule,
    OutlierDetection,
    Service,
    ServicePort,
    TrafficPolicy,
    WorkloadEndpoint,
)
from xds.translate.endpoint import lb_endpoint_bytes
from xds.translate.envoy_core import (
    ADS,
    DEFAULT_CONNECT_TIMEOUT,
    MAX_UINT32,
    outbound_cluster_name,
    protocol_options,
    socket,
)
from xds.translate.locality_lb import weighted_config
from xds.translate.pack import encode, field_bytes, field_number

_LB = {
    None: clu.ClusterLbPolicy.LEAST_REQUEST,  # istiod default when unset
    "UNSPECIFIED": clu.ClusterLbPolicy.LEAST_REQUEST,
    "LEAST_REQUEST": clu.ClusterLbPolicy.LEAST_REQUEST,
    "LEAST_CONN": clu.ClusterLbPolicy.LEAST_REQUEST,
    "ROUND_ROBIN": clu.ClusterLbPolicy.ROUND_ROBIN,
    "RANDOM": clu.ClusterLbPolicy.RANDOM,
    # istiod: ORIGINAL_DST, to the address the app dialled. Without traffic capture that address is the
    # proxy's own outbound listener (a loop), so the endpoints are balanced as by default.
    "PASSTHROUGH": clu.ClusterLbPolicy.LEAST_REQUEST,
}
# Outbound clusters whose endpoints travel inside the cluster (Envoy resolves them), not over EDS. NONE
# (istiod: ORIGINAL_DST) resolves what the app meant to reach (passthrough_targets): no loop back into
# the outbound listener the app dialled.
DNS_RESOLUTIONS = ("DNS", "DNS_ROUND_ROBIN", "NONE")
DEFAULT_RING_SIZE = 1024  # istiod's minimum ring size when unset
_NAME = field_number(clu.Cluster, "name")
_EDS = field_number(clu.Cluster, "eds_cluster_config")
_EDS_SERVICE_NAME = field_number(clu.ClusterEdsClusterConfig, "service_name")
_EDS_ADS = bytes(clu.ClusterEdsClusterConfig(eds_config=ADS))


def merge_policy(base: TrafficPolicy | None, override: TrafficPolicy | None) -> TrafficPolicy | None:
    """istiod MergeTrafficPolicy: each section set on the subset replaces the DR's section.

    The load balancer is one section: a subset's consistentHash replaces the DR's simple LB and vice versa.
    """
    if base is None or override is None:
        return override or base
    lb_set = (
        override.load_balancer is not None
        or override.consistent_hash is not None
        or override.locality is not None
    )
    return replace(
        base,
        load_balancer=override.load_balancer if lb_set else base.load_balancer,
        consistent_hash=override.consistent_hash if lb_set else base.consistent_hash,
        locality=override.locality if lb_set else base.locality,
        connection_pool=override.connection_pool or base.connection_pool,
        outlier_detection=override.outlier_detection or base.outlier_detection,
        port_level=(),
    )


def _at_port(policy: TrafficPolicy | None, port: int | None) -> TrafficPolicy | None:
    """A policy with its portLevelSettings for port applied on top (istiod: port level wins)."""
    if policy is None:
        return None
    if port is None or not policy.port_level:
        return replace(policy, port_level=()) if policy.port_level else policy
    return merge_policy(replace(policy, port_level=()), policy.for_port(port))


def effective_policy(
    rule: DestinationRule | None, subset: str, port: int | None = None
) -> TrafficPolicy | None:
    """Precedence (istiod): subset portLevelSettings > subset > DR portLevelSettings > DR."""
    if rule is None:
        return None
    found = rule.subset(subset) if subset else None
    return merge_policy(
        _at_port(rule.traffic_policy, port), _at_port(found.traffic_policy if found else None, port)
    )


def _circuit_breakers(pool: ConnectionPool | None) -> clu.CircuitBreakers:
    p = pool or ConnectionPool()

    def pick(v: int | None) -> int:
        return MAX_UINT32 if v is None else v

    return clu.CircuitBreakers(
        thresholds=[
            clu.CircuitBreakersThresholds(
                max_connections=pick(p.max_connections),
                max_pending_requests=pick(p.http1_max_pending_requests),
                max_requests=pick(p.http2_max_requests),
                max_retries=pick(p.max_retries),
                track_remaining=True,
            )
        ]
    )


def _outlier(od: OutlierDetection | None) -> clu.OutlierDetection | None:
    if od is None:
        return None

    def enforcing(v: int | None) -> int | None:
        return None if v is None else (100 if v > 0 else 0)

    return clu.OutlierDetection(
        consecutive_5xx=od.consecutive_5xx_errors,
        enforcing_consecutive_5xx=enforcing(od.consecutive_5xx_errors),
        consecutive_gateway_failure=od.consecutive_gateway_errors,
        enforcing_consecutive_gateway_failure=enforcing(od.consecutive_gateway_errors),
        interval=od.interval,
        base_ejection_time=od.base_ejection_time,
        max_ejection_percent=od.max_ejection_percent,
        enforcing_success_rate=0,
    )


def policy_cluster(policy: TrafficPolicy | None, port: ServicePort, resolution: str) -> clu.Cluster:
    """Everything of an outbound cluster except its name and endpoints source."""
    p = policy or TrafficPolicy()
    pool = p.connection_pool
    common_lb = clu.ClusterCommonLbConfig()
    od = p.outlier_detection
    if od is not None:
        # istiod applyOutlierDetection: always set, 0 when unset (Envoy's default 50 % panic routing would
        # send traffic to the ejected hosts of a small service)
        common_lb = clu.ClusterCommonLbConfig(
            healthy_panic_threshold=typ.Percent(value=od.min_health_percent or 0)
        )
    if weighted_config(policy):  # distribute, or failover with outlier detection (istiod)
        common_lb.locality_weighted_lb_config = clu.ClusterCommonLbConfigLocalityWeightedLbConfig()
    lb = _LB.get(p.load_balancer, clu.ClusterLbPolicy.LEAST_REQUEST)
    ring = maglev = None
    if p.consistent_hash is not None:
        ch = p.consistent_hash
        if ch.maglev_table_size is not None:
            lb = clu.ClusterLbPolicy.MAGLEV
            maglev = clu.ClusterMaglevLbConfig(table_size=ch.maglev_table_size or None)
        else:
            lb = clu.ClusterLbPolicy.RING_HASH
            ring = clu.ClusterRingHashLbConfig(minimum_ring_size=ch.ring_size or DEFAULT_RING_SIZE)
    kind = {
        "STATIC": clu.ClusterDiscoveryType.EDS,
        "DNS_ROUND_ROBIN": clu.ClusterDiscoveryType.LOGICAL_DNS,
    }.get(resolution, clu.ClusterDiscoveryType.STRICT_DNS)  # DNS, NONE
    idle = None
    max_per_conn = None
    if pool is not None:
        idle = pool.http_idle_timeout or pool.tcp_idle_timeout  # http.idleTimeout wins
        max_per_conn = pool.max_requests_per_connection
    opts = None
    if port.is_http2 or idle is not None or max_per_conn is not None:
        opts = protocol_options(port.is_http2, idle, max_per_conn)
    return clu.Cluster(
        type=kind,
        connect_timeout=(pool.connect_timeout if pool and pool.connect_timeout else DEFAULT_CONNECT_TIMEOUT),
        lb_policy=lb,
        circuit_breakers=_circuit_breakers(pool),
        outlier_detection=_outlier(od),
        common_lb_config=common_lb,
        typed_extension_protocol_options=opts or {},
        ring_hash_lb_config=ring,
        maglev_lb_config=maglev,
    )


@lru_cache(maxsize=4096)
def _policy_body(policy: TrafficPolicy | None, port: ServicePort, resolution: str) -> bytes:
    return bytes(policy_cluster(policy, port, resolution))


def outbound_cluster_bytes(
    service: Service, port: ServicePort, subset: str, policy: TrafficPolicy | None
) -> tuple[str, bytes]:
    name = outbound_cluster_name(port.number, subset, service.host)
    body = field_bytes(_NAME, name.encode()) + _policy_body(policy, port, service.resolution)
    if service.resolution == "STATIC":
        eds = _EDS_ADS + field_bytes(_EDS_SERVICE_NAME, name.encode())
        body += field_bytes(_EDS, eds)
    elif service.resolution in DNS_RESOLUTIONS:
        endpoints = dns_targets(service)
        if service.resolution == "DNS_ROUND_ROBIN":
            endpoints = endpoints[:1]  # LOGICAL_DNS takes exactly one address
        cla = ep.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                ep.LocalityLbEndpoints(
                    lb_endpoints=[
                        ep.LbEndpoint(endpoint=ep.Endpoint(address=socket(e.address, e.port_for(port))))
                        for e in endpoints
                    ]
                )
            ],
        )
        body += bytes(clu.Cluster(load_assignment=cla))
    return name, body


def dns_targets(service: Service) -> tuple[WorkloadEndpoint, ...]:
    """DNS resolution: the endpoints' addresses, or the host itself when none are listed (istiod)."""
    if service.resolution == "NONE":
        return passthrough_targets(service)
    return service.endpoints or (WorkloadEndpoint(address=service.host),)


def passthrough_targets(service: Service) -> tuple[WorkloadEndpoint, ...]:
    """resolution NONE: where a captured app's connection would have gone. Its endpoints when listed; else
    the entry's single addresses (the VIP the app would have dialled; a CIDR names no one host); else the
    host by DNS. A wildcard host has no address: Envoy's lookup of it fails and the request gets 503."""
    if service.endpoints:
        return service.endpoints
    singles = tuple(WorkloadEndpoint(address=a) for a in map(_single_address, service.addresses) if a)
    return singles or (WorkloadEndpoint(address=service.host),)


def _single_address(address: str) -> str:
    """The IP of an address or a one-host CIDR (/32, /128), else '' (istiod: 'the /32 is removed')."""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return ""
    return str(net.network_address) if net.num_addresses == 1 else ""


# The capability service answers its readiness path 204 once its first component set is loaded and its APIs
# listen, 503 before (capabilities/api/http/metadata.py READY_PATH). Envoy checks it: until then it answers
# 503 itself (no healthy host, no panic routing). Checked often while not ready, rarely once ready; a 503
# marks the host unhealthy at once, a timeout or refused connection after unhealthy_threshold in a row.
CAPABILITY_READY_PATH = "/readyz"
_CAPABILITY_CHECK = core.HealthCheck(
    timeout=timedelta(seconds=1),
    interval=timedelta(seconds=5),
    no_traffic_interval=timedelta(milliseconds=25),  # not ready, no request yet (start-up: each tick is
    # up to 25 ms of sidecar start-up after the service is ready)
    no_traffic_healthy_interval=timedelta(seconds=5),
    unhealthy_interval=timedelta(milliseconds=25),  # not ready (start-up with traffic, a restarted service)
    unhealthy_threshold=3,
    healthy_threshold=1,
    http_health_check=core.HealthCheckHttpHealthCheck(
        path=CAPABILITY_READY_PATH, expected_statuses=[typ.Int64Range(start=200, end=300)]
    ),
)


def static_cluster(
    name: str, address: str, port: int, http2: bool = False, ready_port: int | None = None
) -> clu.Cluster:
    """A STATIC cluster with one endpoint (inbound app, capability service). ready_port: the capability
    service's HTTP port; Envoy checks its readiness path there (the cluster may be its gRPC API)."""
    endpoint = ep.Endpoint(address=socket(address, port))
    cluster = clu.Cluster(
        name=name,
        type=clu.ClusterDiscoveryType.STATIC,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        lb_policy=clu.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ep.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[ep.LocalityLbEndpoints(lb_endpoints=[ep.LbEndpoint(endpoint=endpoint)])],
        ),
        typed_extension_protocol_options=protocol_options(True) if http2 else {},
    )
    if ready_port is not None:
        cluster.health_checks = [_CAPABILITY_CHECK]
        cluster.common_lb_config = clu.ClusterCommonLbConfig(healthy_panic_threshold=typ.Percent(value=0.0))
        if ready_port != port:
            endpoint.health_check_config = ep.EndpointHealthCheckConfig(port_value=ready_port)
    return cluster


@lru_cache(maxsize=4)
def _static_shell(http2: bool) -> bytes:
    shell = static_cluster("", "127.0.0.1", 1, http2)
    shell.load_assignment = None
    return bytes(shell)


def static_cluster_bytes(
    name: str, address: str, port: int, http2: bool = False, ready_port: int | None = None
) -> bytes:
    """== bytes(static_cluster(...)), hand-encoded around a cached shell (a capability cluster, with its
    health check: encoded whole, a few per proxy)."""
    if ready_port is not None:
        return bytes(static_cluster(name, address, port, http2, ready_port))
    locality = encode(ep.LocalityLbEndpoints, lb_endpoints=[lb_endpoint_bytes(address, port, 0)])
    cla = encode(ep.ClusterLoadAssignment, cluster_name=name, endpoints=[locality])
    return encode(clu.Cluster, name=name) + _static_shell(http2) + encode(clu.Cluster, load_assignment=cla)
