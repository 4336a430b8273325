"""Type URLs, their short names and the make-before-break order every push follows."""

from __future__ import annotations

from enum import IntEnum

PREFIX = "type.googleapis.com/"

CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
SCOPED_ROUTE = PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"


class Order(IntEnum):
    """ADS order (xDS spec 'Eventual consistency considerations'): CDS, EDS, LDS, SRDS, RDS, SDS."""

    CDS = 0
    EDS = 1
    LDS = 2
    SRDS = 3
    RDS = 4
    SDS = 5


TYPE_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE, SECRET)
SHORT_NAMES: dict[str, str] = {
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    LISTENER: "LDS",
    SCOPED_ROUTE: "SRDS",
    ROUTE: "RDS",
    SECRET: "SDS",
}
FROM_SHORT: dict[str, str] = {v: k for k, v in SHORT_NAMES.items()}
# LDS, CDS and SRDS are wildcard in SotW: every response is the full set and omission means delete.
WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
