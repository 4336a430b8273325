"""Turn schema-checked document bodies into IR objects (types are already known to be right here)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from xds.model.meta import Labels, Meta
from xds.model.resources import (
    DRAINING,
    HEALTHY,
    SNIFFED,
    UNHEALTHY,
    Component,
    ConnectionPool,
    Delegate,
    DestinationRule,
    HTTPMatch,
    HTTPRoute,
    OutlierDetection,
    Resiliency,
    Retry,
    ServiceEntry,
    ServicePort,
    Subscription,
    Subset,
    TrafficPolicy,
    VirtualService,
    WorkloadEndpoint,
    WorkloadEntry,
)
from xds.model.security import client_tls
from xds.model.traffic import (
    ConsistentHash,
    Cors,
    Destination,
    DirectResponse,
    EgressListener,
    Fault,
    HeaderOps,
    Headers,
    IngressListener,
    L4Match,
    L4Route,
    LocalityLb,
    Mirror,
    Percent,
    Redirect,
    RegexRewrite,
    RouteDestination,
    Sidecar,
    StringMatch,
)

DOMAIN_SUFFIX = "cluster.local"
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")


def duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    return timedelta(microseconds=round(seconds * 1e6))


def resolve_host(host: str, namespace: str) -> str:
    """istiod ResolveShortnameToFQDN: only dot-less names get '<ns>.svc.<domain>' appended."""
    if not host or host == "*" or "." in host:
        return host
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return f"{host}.{namespace}.svc.{DOMAIN_SUFFIX}"


def labels(value: dict[str, str] | None) -> Labels:
    return tuple(sorted((value or {}).items()))


def _string_match(value: dict[str, str] | None) -> StringMatch | None:
    if value is None:
        return None
    for kind in ("exact", "prefix", "regex"):
        if kind in value and value[kind] is not None:
            # istiod: regex "*" or an empty matcher means "present"
            if kind == "regex" and value[kind] == "*":
                return StringMatch("present")
            return StringMatch(kind, value[kind])
    return StringMatch("present")


def _string_matches(value: dict[str, Any] | None) -> tuple[tuple[str, StringMatch], ...]:
    out = []
    for name, match in sorted((value or {}).items()):
        sm = _string_match(match or {})
        if sm is not None:
            out.append((name, sm))
    return tuple(out)


def _destination(value: dict[str, Any], namespace: str) -> Destination:
    port = (value.get("port") or {}).get("number")
    return Destination(resolve_host(value.get("host") or "", namespace), value.get("subset") or "", port)


def _http_match(m: dict[str, Any]) -> HTTPMatch:
    return HTTPMatch(
        name=m.get("name") or "",
        uri=_string_match(m.get("uri")),
        method=_string_match(m.get("method")),
        authority=_string_match(m.get("authority")),
        headers=_string_matches(m.get("headers")),
        without_headers=_string_matches(m.get("withoutHeaders")),
        query_params=_string_matches(m.get("queryParams")),
        ignore_uri_case=bool(m.get("ignoreUriCase")),
        port=m.get("port"),
        source_labels=labels(m["sourceLabels"]) if m.get("sourceLabels") else None,
        source_namespace=m.get("sourceNamespace") or "",
    )


def _header_ops(value: dict[str, Any] | None) -> HeaderOps:
    v = value or {}
    return HeaderOps(
        set=tuple(sorted((v.get("set") or {}).items())),
        add=tuple(sorted((v.get("add") or {}).items())),
        remove=tuple(v.get("remove") or ()),
    )


def headers(value: dict[str, Any] | None) -> Headers | None:
    if not value:
        return None
    return Headers(_header_ops(value.get("request")), _header_ops(value.get("response")))


def _mirrors(r: dict[str, Any], namespace: str) -> tuple[Mirror, ...]:
    """istiod: no percentage -> 100%; an explicit 0 -> no mirror; value v -> v*10000/MILLION."""
    out: list[Mirror] = []
    if r.get("mirror"):
        pct = Percent.from_istio(r.get("mirrorPercentage"), r.get("mirrorPercent")) or Percent(100)
        out.append(Mirror("mirror", _destination(r["mirror"], namespace), pct))
    for j, m in enumerate(r.get("mirrors") or []):
        if m.get("destination"):
            pct = Percent.from_istio(m.get("percentage"), None) or Percent(100)
            out.append(Mirror(f"mirrors[{j}].destination", _destination(m["destination"], namespace), pct))
    return tuple(m for m in out if m.percent.numerator > 0)


def _fault(value: dict[str, Any] | None) -> Fault | None:
    if not value:
        return None
    delay, abort = value.get("delay") or {}, value.get("abort") or {}
    fixed = duration(delay.get("fixedDelay"))  # exponentialDelay: dropped, as istiod does
    return Fault(
        delay=fixed,
        delay_percent=Percent.from_istio(delay.get("percentage"), delay.get("percent")) if fixed else None,
        abort_http_status=abort.get("httpStatus"),
        abort_grpc_status=abort.get("grpcStatus"),
        # the deprecated abort.percent is ignored by istiod
        abort_percent=Percent.from_istio(abort.get("percentage"), None),
    )


def _redirect(value: dict[str, Any] | None) -> Redirect | None:
    if value is None:
        return None
    return Redirect(
        uri=value.get("uri") or "",
        authority=value.get("authority") or "",
        scheme=value.get("scheme") or "",
        port=value.get("port"),
        port_from_request=value.get("derivePort") == "FROM_REQUEST_PORT",
        code=value.get("redirectCode") or 301,
    )


def _direct_response(value: dict[str, Any] | None) -> DirectResponse | None:
    if value is None:
        return None
    body = value.get("body") or {}
    raw = body.get("bytes")
    try:
        decoded = base64.b64decode(raw, validate=True) if raw else None
    except (binascii.Error, ValueError):
        decoded = None  # reported by the model's checks (mesh._required)
    return DirectResponse(status=value.get("status") or 0, body=body.get("string"), body_bytes=decoded)


def _cors(value: dict[str, Any] | None) -> Cors | None:
    if value is None:
        return None
    origins = [sm for sm in (_string_match(o or {}) for o in value.get("allowOrigins") or []) if sm]
    origins += [StringMatch("exact", o) for o in value.get("allowOrigin") or []]
    return Cors(
        allow_origins=tuple(origins),
        allow_methods=tuple(value.get("allowMethods") or ()),
        allow_headers=tuple(value.get("allowHeaders") or ()),
        expose_headers=tuple(value.get("exposeHeaders") or ()),
        max_age=duration(value.get("maxAge")),
        allow_credentials=value.get("allowCredentials"),
        forward_unmatched_preflights=value.get("unmatchedPreflights") != "IGNORE",
    )


def _route_destinations(items: list[dict[str, Any]] | None, namespace: str) -> tuple[RouteDestination, ...]:
    return tuple(
        RouteDestination(
            _destination(d.get("destination") or {}, namespace), d.get("weight"), headers(d.get("headers"))
        )
        for d in items or []
    )


def _l4_route(index: int, r: dict[str, Any], namespace: str) -> L4Route:
    return L4Route(
        index=index,
        matches=tuple(
            L4Match(
                port=m.get("port"),
                destination_subnets=tuple(m.get("destinationSubnets") or ()),
                sni_hosts=tuple(m.get("sniHosts") or ()),
                source_labels=labels(m["sourceLabels"]) if m.get("sourceLabels") else None,
                source_namespace=m.get("sourceNamespace") or "",
            )
            for m in r.get("match") or []
        ),
        route=_route_destinations(r.get("route"), namespace),
    )


def _http_route(index: int, r: dict[str, Any], namespace: str) -> HTTPRoute:
    retries = r.get("retries")
    rewrite = r.get("rewrite") or {}
    delegate = r.get("delegate")
    regex = rewrite.get("uriRegexRewrite")
    return HTTPRoute(
        index=index,
        name=r.get("name") or "",
        matches=tuple(_http_match(m) for m in r.get("match") or []),
        route=_route_destinations(r.get("route"), namespace),
        delegate=Delegate(delegate.get("name") or "", delegate.get("namespace") or namespace)
        if delegate
        else None,
        rewrite_uri=rewrite.get("uri"),
        rewrite_authority=rewrite.get("authority"),
        timeout=duration(r.get("timeout")),
        retries=Retry(
            attempts=retries.get("attempts") or 0,
            per_try_timeout=duration(retries.get("perTryTimeout")),
            retry_on=retries.get("retryOn"),
        )
        if retries is not None
        else None,
        mirrors=_mirrors(r, namespace),
        redirect=_redirect(r.get("redirect")),
        direct_response=_direct_response(r.get("directResponse")),
        fault=_fault(r.get("fault")),
        cors=_cors(r.get("corsPolicy")),
        headers=headers(r.get("headers")),
        regex_rewrite=RegexRewrite(regex.get("match") or "", regex.get("rewrite") or "") if regex else None,
    )


def virtual_service(meta: Meta, spec: dict[str, Any]) -> VirtualService:
    ns = meta.namespace
    return VirtualService(
        meta=meta,
        hosts=tuple(resolve_host(h, ns) for h in spec.get("hosts") or []),
        gateways=tuple(spec.get("gateways") or []),
        http=tuple(_http_route(i, r, ns) for i, r in enumerate(spec.get("http") or [])),
        tcp=tuple(_l4_route(i, r, ns) for i, r in enumerate(spec.get("tcp") or [])),
        tls=tuple(_l4_route(i, r, ns) for i, r in enumerate(spec.get("tls") or [])),
        export_to=tuple(spec.get("exportTo") or ()),
    )


def _consistent_hash(ch: dict[str, Any] | None) -> ConsistentHash | None:
    if ch is None:
        return None
    cookie = ch.get("httpCookie") or {}
    return ConsistentHash(
        header=ch.get("httpHeaderName") or "",
        cookie=cookie.get("name") or "",
        cookie_ttl=duration(cookie.get("ttl")),
        cookie_path=cookie.get("path") or "",
        source_ip=bool(ch.get("useSourceIp")),
        query_parameter=ch.get("httpQueryParameterName") or "",
        ring_size=(ch.get("ringHash") or {}).get("minimumRingSize") or ch.get("minimumRingSize"),
        cookie_attributes=tuple(
            (a.get("name") or "", a.get("value") or "") for a in cookie.get("attributes") or []
        ),
        maglev_table_size=(ch.get("maglev") or {}).get("tableSize") if "maglev" in ch else None,
    )


def _locality_lb(value: dict[str, Any]) -> LocalityLb:
    return LocalityLb(
        enabled=value.get("enabled"),
        distribute=tuple(
            (d.get("from") or "", tuple(sorted((d.get("to") or {}).items())))
            for d in value.get("distribute") or []
        ),
        failover=tuple((f.get("from") or "", f.get("to") or "") for f in value.get("failover") or []),
        failover_priority=tuple(value.get("failoverPriority") or ()),
    )


def _traffic_policy(p: dict[str, Any] | None) -> TrafficPolicy | None:
    if not p:
        return None
    balancer = p.get("loadBalancer") or {}
    lb = balancer.get("simple")
    locality = balancer.get("localityLbSetting")
    cp, od = p.get("connectionPool"), p.get("outlierDetection")
    pool = None
    if cp:
        tcp, http = cp.get("tcp") or {}, cp.get("http") or {}
        pool = ConnectionPool(
            max_connections=tcp.get("maxConnections"),
            connect_timeout=duration(tcp.get("connectTimeout")),
            tcp_idle_timeout=duration(tcp.get("idleTimeout")),
            http1_max_pending_requests=http.get("http1MaxPendingRequests"),
            http2_max_requests=http.get("http2MaxRequests"),
            max_requests_per_connection=http.get("maxRequestsPerConnection"),
            max_retries=http.get("maxRetries"),
            http_idle_timeout=duration(http.get("idleTimeout")),
        )
    outlier = None
    if od:
        outlier = OutlierDetection(
            consecutive_5xx_errors=od.get("consecutive5xxErrors"),
            consecutive_gateway_errors=od.get("consecutiveGatewayErrors"),
            interval=duration(od.get("interval")),
            base_ejection_time=duration(od.get("baseEjectionTime")),
            max_ejection_percent=od.get("maxEjectionPercent"),
            min_health_percent=od.get("minHealthPercent"),
        )
    return TrafficPolicy(
        load_balancer=lb,
        connection_pool=pool,
        outlier_detection=outlier,
        consistent_hash=_consistent_hash(balancer.get("consistentHash")),
        locality=_locality_lb(locality) if locality is not None else None,
        tls=client_tls(p.get("tls")),
        port_level=tuple(
            (
                pl["port"]["number"],
                _traffic_policy({k: v for k, v in pl.items() if k != "port"}) or TrafficPolicy(),
            )
            for pl in p.get("portLevelSettings") or []
            if (pl.get("port") or {}).get("number")
        ),
    )


def destination_rule(meta: Meta, spec: dict[str, Any]) -> DestinationRule:
    return DestinationRule(
        meta=meta,
        host=resolve_host(spec.get("host") or "", meta.namespace),
        traffic_policy=_traffic_policy(spec.get("trafficPolicy")),
        subsets=tuple(
            Subset(s.get("name") or "", labels(s.get("labels")), _traffic_policy(s.get("trafficPolicy")))
            for s in spec.get("subsets") or []
        ),
        export_to=tuple(spec.get("exportTo") or ()),
    )


def workload_endpoint(w: dict[str, Any], source: str) -> WorkloadEndpoint:
    return WorkloadEndpoint(
        address=w.get("address") or "",
        ports=tuple(sorted((w.get("ports") or {}).items())),
        labels=labels(w.get("labels")),
        weight=w.get("weight") or 0,
        source=source,
        locality=w.get("locality") or "",
        service_account=w.get("serviceAccount") or "",
    )


def service_entry(meta: Meta, spec: dict[str, Any]) -> ServiceEntry:
    selector = spec.get("workloadSelector")
    return ServiceEntry(
        meta=meta,
        # Mecha has no Kubernetes registry: ServiceEntries play the part of Services, so short hosts are
        # resolved the same way as in a VirtualService (istiod keeps ServiceEntry hosts verbatim).
        hosts=tuple(resolve_host(h, meta.namespace) for h in spec.get("hosts") or []),
        ports=tuple(
            ServicePort(
                number=p["number"],
                protocol=(p.get("protocol") or SNIFFED).upper(),  # istiod: protocol.Parse("")
                name=p.get("name") or "",
                target_port=p.get("targetPort"),
            )
            for p in spec.get("ports") or []
            if p.get("number")
        ),
        location=spec.get("location") or "MESH_EXTERNAL",
        resolution=spec.get("resolution") or "NONE",
        endpoints=tuple(
            workload_endpoint(w, f"ServiceEntry {meta.namespace}/{meta.name} endpoints[{i}]")
            for i, w in enumerate(spec.get("endpoints") or [])
        ),
        workload_selector=labels(selector.get("labels")) if selector is not None else None,
        addresses=tuple(spec.get("addresses") or ()),
        export_to=tuple(spec.get("exportTo") or ()),
        subject_alt_names=tuple(spec.get("subjectAltNames") or ()),
    )


def sidecar(meta: Meta, spec: dict[str, Any]) -> Sidecar:
    selector = spec.get("workloadSelector")
    return Sidecar(
        meta=meta,
        workload_selector=labels(selector.get("labels")) if selector is not None else None,
        egress=tuple(
            EgressListener(
                hosts=tuple(e.get("hosts") or ()),
                port=(e.get("port") or {}).get("number"),
                protocol=((e.get("port") or {}).get("protocol") or "HTTP").upper(),
                bind=e.get("bind") or "",
            )
            for e in spec.get("egress") or []
        ),
        ingress=tuple(
            IngressListener(
                port=(i.get("port") or {}).get("number") or 0,
                protocol=((i.get("port") or {}).get("protocol") or "HTTP").upper(),
                name=(i.get("port") or {}).get("name") or "",
                bind=i.get("bind") or "",
                default_endpoint=i.get("defaultEndpoint") or "",
            )
            for i in spec.get("ingress") or []
        ),
        outbound_mode=(spec.get("outboundTrafficPolicy") or {}).get("mode") or "",
    )


def workload_entry(meta: Meta, spec: dict[str, Any], body: dict[str, Any] | None = None) -> WorkloadEntry:
    endpoint = workload_endpoint(spec, f"WorkloadEntry {meta.namespace}/{meta.name}")
    health = endpoint_health((body or {}).get("status"))
    return WorkloadEntry(meta, replace(endpoint, health=health) if health != HEALTHY else endpoint)


def endpoint_health(status: Any) -> str:
    """istiod's WorkloadEntry status: condition Healthy False -> UNHEALTHY; Mecha's Draining True wins."""
    conditions = status.get("conditions") if isinstance(status, dict) else None
    found = {
        str(c.get("type")): str(c.get("status"))
        for c in (conditions if isinstance(conditions, list) else [])
        if isinstance(c, dict)
    }
    if found.get("Draining") == "True":
        return DRAINING
    return UNHEALTHY if found.get("Healthy") == "False" else HEALTHY


def _scopes(body: dict[str, Any]) -> tuple[str, ...]:
    scopes = body.get("scopes") or []
    return tuple(str(s) for s in scopes) if isinstance(scopes, list) else ()


def component(meta: Meta, spec: dict[str, Any], body: dict[str, Any]) -> Component:
    return Component(
        meta=meta,
        type=spec.get("type") or "",
        version=spec.get("version") or "",
        metadata_names=tuple(str(m.get("name")) for m in spec.get("metadata") or [] if m.get("name")),
        scopes=_scopes(body),
    )


def subscription(meta: Meta, spec: dict[str, Any], body: dict[str, Any]) -> Subscription:
    routes = spec.get("routes") or {}
    return Subscription(
        meta=meta,
        pubsubname=spec.get("pubsubname") or "",
        topic=spec.get("topic") or "",
        routes=tuple((r.get("match") or "", r.get("path") or "") for r in routes.get("rules") or []),
        default_route=routes.get("default") or spec.get("route") or "",
        dead_letter_topic=spec.get("deadLetterTopic") or "",
        scopes=_scopes(body),
    )


def resiliency(meta: Meta, spec: dict[str, Any], body: dict[str, Any]) -> Resiliency:
    policies, targets = spec.get("policies") or {}, spec.get("targets") or {}

    def names(d: Any) -> tuple[str, ...]:
        return tuple(sorted(str(k) for k in d)) if isinstance(d, dict) else ()

    return Resiliency(
        meta=meta,
        timeouts=names(policies.get("timeouts")),
        retries=names(policies.get("retries")),
        circuit_breakers=names(policies.get("circuitBreakers")),
        target_apps=names(targets.get("apps")),
        target_actors=names(targets.get("actors")),
        target_components=names(targets.get("components")),
        scopes=_scopes(body),
        spec_json=json.dumps(spec, sort_keys=True, default=str),
    )
