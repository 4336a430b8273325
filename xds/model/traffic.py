"""IR of the rest of Istio's traffic surface: fault, mirror, redirect, direct response, headers, CORS, TCP/TLS
routes, consistent hash / locality LB, and the Sidecar resource. Frozen and hashable like resources.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from xds.model.meta import Labels, Meta


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: str  # exact | prefix | regex | present
    value: str = ""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str  # FQDN
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class RouteDestination:
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


@dataclass(frozen=True, slots=True)
class Percent:
    """An Envoy FractionalPercent: numerator over 100 (HUNDRED) or over 1,000,000 (MILLION)."""

    numerator: int
    per_million: bool = False

    @classmethod
    def from_istio(cls, percentage: dict[str, object] | None, legacy: int | None) -> Percent | None:
        """`percentage.value` (double, 0-100) -> MILLION; the legacy integer percent -> HUNDRED."""
        if percentage is not None:
            value = percentage.get("value")
            return cls(round(float(value or 0) * 10000), True)  # type: ignore[arg-type]
        if legacy is not None:
            return cls(int(legacy), False)
        return None

    @property
    def ratio(self) -> float:
        return self.numerator / (1_000_000 if self.per_million else 100)


@dataclass(frozen=True, slots=True)
class Fault:
    delay: timedelta | None = None
    delay_percent: Percent | None = None
    abort_http_status: int | None = None
    abort_grpc_status: str | None = None
    abort_percent: Percent | None = None

    @property
    def has_abort(self) -> bool:
        return self.abort_http_status is not None or self.abort_grpc_status is not None


@dataclass(frozen=True, slots=True)
class Mirror:
    field: str  # where it was written (diagnostics): "mirror" or "mirrors[1].destination"
    destination: Destination
    percent: Percent = Percent(100)


@dataclass(frozen=True, slots=True)
class Redirect:
    uri: str = ""
    authority: str = ""
    scheme: str = ""
    port: int | None = None
    port_from_request: bool = False  # derivePort: FROM_REQUEST_PORT
    code: int = 301
    prefix: str = ""  # replaces the matched path prefix (Gateway API ReplacePrefixMatch); not with uri


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str | None = None
    body_bytes: bytes | None = None


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderOps = HeaderOps()
    response: HeaderOps = HeaderOps()

    def __bool__(self) -> bool:
        return bool(self.request or self.response)


@dataclass(frozen=True, slots=True)
class Cors:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: timedelta | None = None
    allow_credentials: bool | None = None
    forward_unmatched_preflights: bool = True  # unmatchedPreflights: IGNORE -> False


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    pattern: str
    substitution: str


@dataclass(frozen=True, slots=True)
class L4Match:
    """tcp[].match / tls[].match: port, destinationSubnets, sniHosts (TLS), sourceLabels."""

    port: int | None = None
    destination_subnets: tuple[str, ...] = ()
    sni_hosts: tuple[str, ...] = ()
    source_labels: Labels | None = None
    source_namespace: str = ""


@dataclass(frozen=True, slots=True)
class L4Route:
    index: int
    matches: tuple[L4Match, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsistentHash:
    header: str = ""
    cookie: str = ""
    cookie_ttl: timedelta | None = None
    cookie_path: str = ""
    source_ip: bool = False
    query_parameter: str = ""
    ring_size: int | None = None  # ringHash.minimumRingSize / deprecated minimumRingSize
    cookie_attributes: tuple[tuple[str, str], ...] = ()  # httpCookie.attributes (name, value)
    maglev_table_size: int | None = None


@dataclass(frozen=True, slots=True)
class LocalityLb:
    enabled: bool | None = None
    distribute: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()  # (from, ((to, weight), ...))
    failover: tuple[tuple[str, str], ...] = ()  # (from region, to region)
    failover_priority: tuple[str, ...] = ()  # label names, or "label=value" overrides


@dataclass(frozen=True, slots=True)
class EgressListener:
    hosts: tuple[str, ...]  # "ns/host" entries
    port: int | None = None
    protocol: str = "HTTP"  # port.protocol
    bind: str = ""


@dataclass(frozen=True, slots=True)
class IngressListener:
    """Sidecar ingress[]: a listener on port whose traffic goes to default_endpoint (host:port or unix://)."""

    port: int
    protocol: str = "HTTP"
    name: str = ""
    bind: str = ""
    default_endpoint: str = ""


@dataclass(frozen=True, slots=True)
class Sidecar:
    meta: Meta
    workload_selector: Labels | None = None
    egress: tuple[EgressListener, ...] = ()
    ingress: tuple[IngressListener, ...] = ()
    outbound_mode: str = ""  # outboundTrafficPolicy.mode: "" (mesh default), ALLOW_ANY, REGISTRY_ONLY
