"""The IR: frozen, hashable dataclasses with no Envoy imports. Equal inputs compare equal, so the translator
can memoize on them. Locations never take part in equality (moving a document between files changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from xds.model.meta import CarriedResource as CarriedResource  # re-exported for xds.gatewayapi
from xds.model.meta import Labels, Meta
from xds.model.security import ClientTLS
from xds.model.traffic import (
    ConsistentHash,
    Cors,
    DirectResponse,
    Fault,
    Headers,
    L4Route,
    LocalityLb,
    Mirror,
    Redirect,
    RegexRewrite,
    RouteDestination,
    StringMatch,
)
from xds.model.traffic import Destination as Destination  # re-exported for xds.gatewayapi

# ---- VirtualService -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPMatch:
    name: str = ""
    uri: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    port: int | None = None
    source_labels: Labels | None = None  # per-proxy: the route exists only for proxies with these labels
    source_namespace: str = ""  # per-proxy: ... and only in this namespace


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 0
    per_try_timeout: timedelta | None = None
    retry_on: str | None = None


@dataclass(frozen=True, slots=True)
class Delegate:
    name: str
    namespace: str


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    index: int  # position in spec.http (for diagnostics)
    name: str = ""
    matches: tuple[HTTPMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()
    delegate: Delegate | None = None
    rewrite_uri: str | None = None
    rewrite_authority: str | None = None
    timeout: timedelta | None = None
    retries: Retry | None = None  # None = mesh default policy; Retry(attempts=0) = no retries
    mirrors: tuple[Mirror, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    fault: Fault | None = None
    cors: Cors | None = None
    headers: Headers | None = None
    regex_rewrite: RegexRewrite | None = None

    @property
    def terminal(self) -> bool:
        """redirect / directResponse: the route answers itself, no destination."""
        return self.redirect is not None or self.direct_response is not None


@dataclass(frozen=True, slots=True)
class VirtualService:
    meta: Meta
    hosts: tuple[str, ...] = ()  # FQDN-resolved; empty = delegate VS
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[L4Route, ...] = ()
    tls: tuple[L4Route, ...] = ()
    export_to: tuple[str, ...] = ()  # empty = everywhere ("*")
    # metadata.creationTimestamp (RFC 3339; the store sets it at first accept): the oldest VirtualService
    # of a host wins, as istiod sorts config by creation time
    created: str = ""

    @property
    def is_delegate(self) -> bool:
        return not self.hosts

    @property
    def age_key(self) -> tuple[str, str, str]:
        """istiod sortConfigByCreationTime: oldest first, then namespace, name (no timestamp: first)."""
        return (self.created, self.meta.namespace, self.meta.name)

    @property
    def for_mesh(self) -> bool:
        """Applies to sidecars: no gateways listed, or 'mesh' listed (istiod semantics)."""
        return not self.gateways or "mesh" in self.gateways


# ---- DestinationRule ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    max_connections: int | None = None
    connect_timeout: timedelta | None = None
    tcp_idle_timeout: timedelta | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    http_idle_timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    interval: timedelta | None = None
    base_ejection_time: timedelta | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    load_balancer: str | None = None  # simple LB name
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    consistent_hash: ConsistentHash | None = None
    locality: LocalityLb | None = None
    port_level: tuple[tuple[int, TrafficPolicy], ...] = ()  # portLevelSettings: (port, policy)
    tls: ClientTLS | None = None  # trafficPolicy.tls (translated by xds.translate.security.upstream)

    def for_port(self, port: int) -> TrafficPolicy | None:
        return next((p for n, p in self.port_level if n == port), None)


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: Labels = ()
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRule:
    meta: Meta
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


# ---- ServiceEntry / WorkloadEntry ---------------------------------------------------------------------


# A port that declares no protocol (istiod's UnsupportedProtocol): istiod sniffs it. It is routed as HTTP
# on the outbound listener, and its local TCP listener (node metadata tcp_ports) detects HTTP or passes
# bytes through (xds/translate/tcp.py).
SNIFFED = "AUTO"


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    protocol: str = "HTTP"
    name: str = ""
    target_port: int | None = None

    @property
    def is_http(self) -> bool:
        return self.protocol.upper() in ("HTTP", "HTTP2", "GRPC", "GRPC-WEB", SNIFFED)

    @property
    def is_sniffed(self) -> bool:
        return self.protocol.upper() == SNIFFED

    @property
    def is_http2(self) -> bool:
        return self.protocol.upper() in ("HTTP2", "GRPC", "GRPC-WEB")


# Endpoint health (WorkloadEntry status conditions Healthy / Draining, from registration.py)
HEALTHY, UNHEALTHY, DRAINING = "HEALTHY", "UNHEALTHY", "DRAINING"


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    address: str
    ports: tuple[tuple[str, int], ...] = ()  # port name -> target port
    labels: Labels = ()
    weight: int = 0  # 0 = unset (Envoy default 1)
    source: str = ""  # e.g. "WorkloadEntry default/reviews-v1" (diagnostics, analyze)
    locality: str = ""  # region/zone/subzone
    service_account: str = ""  # serviceAccount: the SPIFFE identity spiffe://<td>/ns/<ns>/sa/<sa>
    health: str = HEALTHY  # HEALTHY | UNHEALTHY (left out of EDS) | DRAINING (EDS health_status DRAINING)

    def port_for(self, port: ServicePort) -> int:
        named = dict(self.ports).get(port.name) if port.name else None
        return named or port.target_port or port.number

    def matches(self, selector: Labels) -> bool:
        mine = dict(self.labels)
        return all(mine.get(k) == v for k, v in selector)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    meta: Meta
    hosts: tuple[str, ...]
    ports: tuple[ServicePort, ...] = ()
    location: str = "MESH_EXTERNAL"
    resolution: str = "NONE"
    endpoints: tuple[WorkloadEndpoint, ...] = ()
    workload_selector: Labels | None = None
    addresses: tuple[str, ...] = ()
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()  # extra SANs accepted from its endpoints (mTLS)


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    meta: Meta
    endpoint: WorkloadEndpoint


@dataclass(frozen=True, slots=True)
class Service:
    """One registry host, derived from a ServiceEntry plus the WorkloadEntries it selects."""

    host: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: str = "STATIC"
    mesh_external: bool = False
    endpoints: tuple[WorkloadEndpoint, ...] = ()
    addresses: tuple[str, ...] = ()
    export_to: tuple[str, ...] = ()
    source: Meta | None = field(default=None, compare=False, hash=False)
    subject_alt_names: tuple[str, ...] = ()  # the ServiceEntry's subjectAltNames

    @property
    def short_name(self) -> str:
        return self.host.split(".", 1)[0]

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)


# ---- Dapr ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Component:
    meta: Meta
    type: str
    version: str = ""
    metadata_names: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscription:
    meta: Meta
    pubsubname: str
    topic: str
    routes: tuple[tuple[str, str], ...] = ()  # (match CEL, path)
    default_route: str = ""
    dead_letter_topic: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resiliency:
    meta: Meta
    timeouts: tuple[str, ...] = ()
    retries: tuple[str, ...] = ()
    circuit_breakers: tuple[str, ...] = ()
    target_apps: tuple[str, ...] = ()
    target_actors: tuple[str, ...] = ()
    target_components: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    spec_json: str = ""  # canonical JSON of spec: policies/targets contents (service invocation -> Envoy)
