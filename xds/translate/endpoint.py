"""EDS: one ClusterLoadAssignment per EDS cluster, endpoints filtered by subset labels, with weights.

Each LbEndpoint is serialized once (shared by the base cluster and every subset that selects it); a CLA is
the concatenation of its name field and its endpoints (protobuf repeated fields concatenate)."""

from __future__ import annotations

from functools import lru_cache

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep

from xds.model.meta import Labels
from xds.model.resources import DRAINING, HEALTHY, UNHEALTHY, Service, ServicePort, WorkloadEndpoint
from xds.translate.envoy_core import socket
from xds.translate.pack import field_bytes, field_number, repeated_field

_CLA_NAME = field_number(ep.ClusterLoadAssignment, "cluster_name")
_CLA_ENDPOINTS = field_number(ep.ClusterLoadAssignment, "endpoints")
_LOCALITY_LB_ENDPOINTS = field_number(ep.LocalityLbEndpoints, "lb_endpoints")


@lru_cache(maxsize=65536)
def lb_endpoint_bytes(address: str, port: int, weight: int, draining: bool = False) -> bytes:
    return bytes(
        ep.LbEndpoint(
            endpoint=ep.Endpoint(address=socket(address, port)),
            load_balancing_weight=weight or None,
            health_status=eds_health(DRAINING if draining else HEALTHY),
        )
    )


def eds_health(health: str) -> core.HealthStatus:
    """A draining endpoint stays in EDS as DRAINING: Envoy sends it no new requests, in-flight ones finish
    (unset, UNKNOWN, is how istiod sends a healthy one)."""
    return core.HealthStatus.DRAINING if health == DRAINING else core.HealthStatus.UNKNOWN


def in_eds(endpoint: WorkloadEndpoint) -> bool:
    """istiod leaves unhealthy workload entries out of EDS (PILOT_SEND_UNHEALTHY_ENDPOINTS off)."""
    return endpoint.health != UNHEALTHY


def selected_endpoints(service: Service, port: ServicePort, subset_labels: Labels | None) -> list[bytes]:
    picked = sorted(
        (e.address, e.port_for(port), e.weight, e.health == DRAINING)
        for e in service.endpoints
        if in_eds(e) and (subset_labels is None or e.matches(subset_labels))
    )
    return [lb_endpoint_bytes(*p) for p in picked]


def cla_bytes(cluster_name: str, endpoints: list[bytes]) -> bytes:
    body = field_bytes(_CLA_NAME, cluster_name.encode())
    if endpoints:
        body += field_bytes(_CLA_ENDPOINTS, repeated_field(_LOCALITY_LB_ENDPOINTS, endpoints))
    return body
