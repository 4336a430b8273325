"""EDS: one ClusterLoadAssignment per EDS cluster, endpoints filtered by subset labels, with weights.

Each LbEndpoint is serialized once (shared by the base cluster and every subset that selects it); a CLA is
the concatenation of its name field and its endpoints (protobuf repeated fields concatenate)."""

from __future__ import annotations

from functools import lru_cache

from envoy_data_plane.envoy.config.endpoint import v3 as ep

from xds.model.resources import Labels, Service, ServicePort
from xds.translate.common import socket
from xds.translate.pack import field_bytes, field_number, repeated_field

_CLA_NAME = field_number(ep.ClusterLoadAssignment, "cluster_name")
_CLA_ENDPOINTS = field_number(ep.ClusterLoadAssignment, "endpoints")
_LOCALITY_LB_ENDPOINTS = field_number(ep.LocalityLbEndpoints, "lb_endpoints")


@lru_cache(maxsize=65536)
def lb_endpoint_bytes(address: str, port: int, weight: int) -> bytes:
    return bytes(
        ep.LbEndpoint(
            endpoint=ep.Endpoint(address=socket(address, port)),
            load_balancing_weight=weight or None,
        )
    )


def selected_endpoints(service: Service, port: ServicePort, subset_labels: Labels | None) -> list[bytes]:
    picked = sorted(
        (e.address, e.port_for(port), e.weight)
        for e in service.endpoints
        if subset_labels is None or e.matches(subset_labels)
    )
    return [lb_endpoint_bytes(*p) for p in picked]


def cla_bytes(cluster_name: str, endpoints: list[bytes]) -> bytes:
    body = field_bytes(_CLA_NAME, cluster_name.encode())
    if endpoints:
        body += field_bytes(_CLA_ENDPOINTS, repeated_field(_LOCALITY_LB_ENDPOINTS, endpoints))
    return body
