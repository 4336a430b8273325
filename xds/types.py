"""Type URLs, their short names and the make-before-break order every push follows."""

from __future__ import annotations

from enum import IntEnum

PREFIX = "type.googleapis.com/"

CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"


class Order(IntEnum):
    """ADS order (xDS spec 'Eventual consistency considerations'): CDS, EDS, LDS, RDS, SDS."""

    CDS = 0
    EDS = 1
    LDS = 2
    RDS = 3
    SDS = 4


TYPE_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
SHORT_NAMES: dict[str, str] = {
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    LISTENER: "LDS",
    ROUTE: "RDS",
    SECRET: "SDS",
}
FROM_SHORT: dict[str, str] = {v: k for k, v in SHORT_NAMES.items()}
# LDS and CDS are wildcard in SotW: every response is the full set and omission means delete.
WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER})


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
