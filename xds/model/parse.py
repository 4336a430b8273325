"""Turn schema-checked document bodies into IR objects (types are already known to be right here)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Any

from xds.model.resources import (
    Component,
    ConnectionPool,
    Delegate,
    Destination,
    DestinationRule,
    HTTPMatch,
    HTTPRoute,
    Labels,
    Meta,
    OutlierDetection,
    Resiliency,
    Retry,
    RouteDestination,
    ServiceEntry,
    ServicePort,
    StringMatch,
    Subscription,
    Subset,
    TrafficPolicy,
    VirtualService,
    WorkloadEndpoint,
    WorkloadEntry,
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
    )


def _http_route(index: int, r: dict[str, Any], namespace: str) -> HTTPRoute:
    retries = r.get("retries")
    rewrite = r.get("rewrite") or {}
    delegate = r.get("delegate")
    mirrors = [("mirror", r["mirror"])] if r.get("mirror") else []
    mirrors += [
        (f"mirrors[{j}].destination", m["destination"])
        for j, m in enumerate(r.get("mirrors") or [])
        if m.get("destination")
    ]
    return HTTPRoute(
        index=index,
        name=r.get("name") or "",
        matches=tuple(_http_match(m) for m in r.get("match") or []),
        route=tuple(
            RouteDestination(_destination(d.get("destination") or {}, namespace), d.get("weight"))
            for d in r.get("route") or []
        ),
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
        mirrors=tuple((fld, _destination(m, namespace)) for fld, m in mirrors),
        terminal=bool(r.get("redirect") or r.get("directResponse")),
    )


def virtual_service(meta: Meta, spec: dict[str, Any]) -> VirtualService:
    ns = meta.namespace
    return VirtualService(
        meta=meta,
        hosts=tuple(resolve_host(h, ns) for h in spec.get("hosts") or []),
        gateways=tuple(spec.get("gateways") or []),
        http=tuple(_http_route(i, r, ns) for i, r in enumerate(spec.get("http") or [])),
    )


def _traffic_policy(p: dict[str, Any] | None) -> TrafficPolicy | None:
    if not p:
        return None
    lb = (p.get("loadBalancer") or {}).get("simple")
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
    return TrafficPolicy(load_balancer=lb, connection_pool=pool, outlier_detection=outlier)


def destination_rule(meta: Meta, spec: dict[str, Any]) -> DestinationRule:
    return DestinationRule(
        meta=meta,
        host=resolve_host(spec.get("host") or "", meta.namespace),
        traffic_policy=_traffic_policy(spec.get("trafficPolicy")),
        subsets=tuple(
            Subset(s.get("name") or "", labels(s.get("labels")), _traffic_policy(s.get("trafficPolicy")))
            for s in spec.get("subsets") or []
        ),
    )


def workload_endpoint(w: dict[str, Any], source: str) -> WorkloadEndpoint:
    return WorkloadEndpoint(
        address=w.get("address") or "",
        ports=tuple(sorted((w.get("ports") or {}).items())),
        labels=labels(w.get("labels")),
        weight=w.get("weight") or 0,
        source=source,
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
                protocol=(p.get("protocol") or "HTTP").upper(),
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
    )


def workload_entry(meta: Meta, spec: dict[str, Any]) -> WorkloadEntry:
    return WorkloadEntry(meta, workload_endpoint(spec, f"WorkloadEntry {meta.namespace}/{meta.name}"))


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
    )
