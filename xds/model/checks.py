"""Per-document semantic checks of the traffic surface (istiod's validation webhook rules that a type check
cannot express): contradictory actions, out-of-range percentages, malformed hosts. Each names its field."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from xds.model.schema import Report

GRPC_STATUS = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
REDIRECT_CODES = (0, 301, 302, 303, 307, 308)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _percent(value: Any, path: str, report: Report) -> None:
    if isinstance(value, dict) and isinstance(value.get("value"), int | float):
        if not 0 <= value["value"] <= 100:
            report(
                "error", f"{path}.value", f"percentage {value['value']} is not within 0-100", "bad-percent"
            )


def _int_percent(value: Any, path: str, report: Report) -> None:
    if isinstance(value, int) and not 0 <= value <= 100:
        report("error", path, f"percent {value} is not within 0-100", "bad-percent")


def export_to_checks(values: Any, path: str, report: Report) -> None:
    if not isinstance(values, list):
        return
    for i, v in enumerate(values):
        if isinstance(v, str) and v not in (".", "*", "~") and not _NAMESPACE.match(v):
            msg = f"{v!r} is not '.', '*', '~' or a namespace name"
            report("error", f"{path}[{i}]", msg, "bad-export-to")
    if "~" in values and len(values) > 1:
        report("error", path, "'~' (export nowhere) cannot be combined with other entries", "bad-export-to")


def _http_route_checks(r: dict[str, Any], base: str, report: Report) -> None:
    actions = [k for k in ("route", "redirect", "directResponse", "delegate") if r.get(k)]
    if len(actions) > 1:
        msg = f"{' and '.join(actions)} are mutually exclusive: an http route has one action"
        report("error", base, msg, "contradictory")
    redirect = r.get("redirect")
    if isinstance(redirect, dict) and redirect.get("redirectCode") not in (None, *REDIRECT_CODES):
        report(
            "error",
            f"{base}.redirect.redirectCode",
            f"{redirect['redirectCode']} is not one of 301, 302, 303, 307, 308",
            "bad-redirect",
        )
    direct = r.get("directResponse")
    if isinstance(direct, dict):
        status = direct.get("status")
        if not isinstance(status, int) or not 200 <= status <= 599:
            report("error", f"{base}.directResponse.status", "required: an HTTP status 200-599", "bad-status")
        raw = (direct.get("body") or {}).get("bytes") if isinstance(direct.get("body"), dict) else None
        if isinstance(raw, str):
            try:
                base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                report("error", f"{base}.directResponse.body.bytes", "not valid base64", "bad-base64")
    fault = r.get("fault")
    if isinstance(fault, dict):
        if not fault.get("delay") and not fault.get("abort"):
            report("error", f"{base}.fault", "set delay or abort (or both)", "bad-fault")
        delay, abort = fault.get("delay"), fault.get("abort")
        if isinstance(delay, dict):
            if not delay.get("fixedDelay") and not delay.get("exponentialDelay"):
                report("error", f"{base}.fault.delay", "fixedDelay is required", "bad-fault")
            _percent(delay.get("percentage"), f"{base}.fault.delay.percentage", report)
            _int_percent(delay.get("percent"), f"{base}.fault.delay.percent", report)
        if isinstance(abort, dict):
            if not any(abort.get(k) is not None for k in ("httpStatus", "grpcStatus", "http2Error")):
                report("error", f"{base}.fault.abort", "httpStatus or grpcStatus is required", "bad-fault")
            status = abort.get("httpStatus")
            if isinstance(status, int) and not 200 <= status <= 599:
                msg = f"{status} is not an HTTP status 200-599"
                report("error", f"{base}.fault.abort.httpStatus", msg, "bad-fault")
            grpc = abort.get("grpcStatus")
            if isinstance(grpc, str) and grpc not in GRPC_STATUS:
                msg = f"{grpc!r} is not a gRPC status name (e.g. UNAVAILABLE)"
                report("error", f"{base}.fault.abort.grpcStatus", msg, "bad-fault")
            _percent(abort.get("percentage"), f"{base}.fault.abort.percentage", report)
    _percent(r.get("mirrorPercentage"), f"{base}.mirrorPercentage", report)
    _int_percent(r.get("mirrorPercent"), f"{base}.mirrorPercent", report)
    for j, m in enumerate(r.get("mirrors") or []):
        if isinstance(m, dict):
            _percent(m.get("percentage"), f"{base}.mirrors[{j}].percentage", report)
            if not (m.get("destination") or {}).get("host"):
                report("error", f"{base}.mirrors[{j}].destination.host", "required", "required")
    if isinstance(r.get("mirror"), dict) and not r["mirror"].get("host"):
        report("error", f"{base}.mirror.host", "required", "required")


def _l4_checks(routes: Any, field: str, report: Report) -> None:
    for i, r in enumerate(routes or []):
        if not isinstance(r, dict):
            continue
        base = f"spec.{field}[{i}]"
        if not r.get("route"):
            report("error", f"{base}.route", "required: at least one destination", "required")
        for j, d in enumerate(r.get("route") or []):
            if not ((d or {}).get("destination") or {}).get("host"):
                report("error", f"{base}.route[{j}].destination.host", "required", "required")
        if field == "tls":
            matches = r.get("match") or []
            if not matches:
                report("error", f"{base}.match", "required: tls routes match on sniHosts", "required")
            for j, m in enumerate(matches):
                if not (m or {}).get("sniHosts"):
                    report("error", f"{base}.match[{j}].sniHosts", "required", "required")


def _sidecar_checks(spec: dict[str, Any], report: Report) -> None:
    for i, e in enumerate(spec.get("egress") or []):
        if not isinstance(e, dict):
            continue
        if not e.get("hosts"):
            report("error", f"spec.egress[{i}].hosts", "required: at least one namespace/host", "required")
        for j, h in enumerate(e.get("hosts") or []):
            if not isinstance(h, str):
                continue
            ns, sep, host = h.partition("/")
            if not sep or not ns or not host:
                msg = f"{h!r} must be namespace/host (e.g. ./*, istio-system/*, */api.example.com)"
                report("error", f"spec.egress[{i}].hosts[{j}]", msg, "bad-host")
            elif ns not in (".", "*", "~") and not _NAMESPACE.match(ns):
                msg = f"{ns!r} is not '.', '*', '~' or a namespace name"
                report("error", f"spec.egress[{i}].hosts[{j}]", msg, "bad-host")


_ENDPOINT = re.compile(r"^(127\.0\.0\.1|0\.0\.0\.0|\[::1\]|\[::\]):(\d{1,5})$")


def _sidecar_port_checks(spec: dict[str, Any], report: Report) -> None:
    ports: set[int | None] = set()  # None: a missing number (reported once per entry)
    for i, ing in enumerate(spec.get("ingress") or []):
        if not isinstance(ing, dict):
            continue
        base = f"spec.ingress[{i}]"
        number = (ing.get("port") or {}).get("number")
        if number is None:
            report("error", f"{base}.port.number", "required", "required")
        elif number in ports:
            report("error", f"{base}.port.number", f"port {number} is listed twice", "duplicate")
        ports.add(number)
        endpoint = ing.get("defaultEndpoint")
        if not endpoint:
            report("error", f"{base}.defaultEndpoint", "required (e.g. 127.0.0.1:8080)", "required")
        elif isinstance(endpoint, str) and not endpoint.startswith("unix://"):
            found = _ENDPOINT.match(endpoint)
            if found is None or not 0 < int(found.group(2)) < 65536:
                msg = f"{endpoint!r} must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT or unix:///path"
                report("error", f"{base}.defaultEndpoint", msg, "bad-endpoint")
    for i, e in enumerate(spec.get("egress") or []):
        if isinstance(e, dict) and e.get("bind") and not (e.get("port") or {}).get("number"):
            report("error", f"spec.egress[{i}].bind", "bind needs port.number", "required")


def _locality_checks(lb: Any, base: str, report: Report) -> None:
    """istiod validateLocalityLbSetting: weights per `from` sum to 100, failover regions differ."""
    if not isinstance(lb, dict):
        return
    for i, d in enumerate(lb.get("distribute") or []):
        if not isinstance(d, dict):
            continue
        where = f"{base}.distribute[{i}]"
        if not d.get("from"):
            report("error", f"{where}.from", "required", "required")
        to = d.get("to") or {}
        if not to:
            report("error", f"{where}.to", "required: at least one locality", "required")
        elif isinstance(to, dict) and sum(v for v in to.values() if isinstance(v, int)) != 100:
            report("error", f"{where}.to", "weights must add up to 100", "bad-weight")
    for i, f in enumerate(lb.get("failover") or []):
        if not isinstance(f, dict):
            continue
        where = f"{base}.failover[{i}]"
        for key in ("from", "to"):
            if not f.get(key):
                report("error", f"{where}.{key}", "required (a region)", "required")
        if f.get("from") and f.get("from") == f.get("to"):
            report("error", where, "from and to must be different regions", "bad-failover")
        for key in ("from", "to"):
            if "/" in str(f.get(key) or ""):
                report("error", f"{where}.{key}", "failover is between regions: no '/'", "bad-failover")


def _policy_locality(policy: Any, base: str, report: Report) -> None:
    if not isinstance(policy, dict):
        return
    _locality_checks(
        (policy.get("loadBalancer") or {}).get("localityLbSetting"),
        f"{base}.loadBalancer.localityLbSetting",
        report,
    )
    for j, pl in enumerate(policy.get("portLevelSettings") or []):
        if isinstance(pl, dict):
            lb = (pl.get("loadBalancer") or {}).get("localityLbSetting")
            _locality_checks(lb, f"{base}.portLevelSettings[{j}].loadBalancer.localityLbSetting", report)


def _locality_value(value: Any, path: str, report: Report) -> None:
    if isinstance(value, str) and value and (value.count("/") > 2 or "" in value.split("/")[:1]):
        report("error", path, f"{value!r} is not region[/zone[/subzone]]", "bad-locality")


def traffic_checks(kind: str, spec: dict[str, Any], report: Report) -> None:
    """Run after the type check (types are right where these look)."""
    if kind == "VirtualService":
        for i, r in enumerate(spec.get("http") or []):
            if isinstance(r, dict):
                _http_route_checks(r, f"spec.http[{i}]", report)
        _l4_checks(spec.get("tcp"), "tcp", report)
        _l4_checks(spec.get("tls"), "tls", report)
        export_to_checks(spec.get("exportTo"), "spec.exportTo", report)
    elif kind == "DestinationRule":
        export_to_checks(spec.get("exportTo"), "spec.exportTo", report)
        policies = [("spec.trafficPolicy", spec.get("trafficPolicy"))]
        policies += [
            (f"spec.subsets[{i}].trafficPolicy", (s or {}).get("trafficPolicy"))
            for i, s in enumerate(spec.get("subsets") or [])
        ]
        for base, policy in policies:
            _policy_locality(policy, base, report)
            seen: set[int | None] = set()
            for j, pl in enumerate((policy or {}).get("portLevelSettings") or []):
                number = ((pl or {}).get("port") or {}).get("number")
                where = f"{base}.portLevelSettings[{j}].port.number"
                if number is None:
                    report("error", where, "required", "required")
                elif number in seen:
                    report("error", where, f"port {number} is listed twice", "duplicate")
                seen.add(number)
    elif kind == "ServiceEntry":
        export_to_checks(spec.get("exportTo"), "spec.exportTo", report)
        for i, e in enumerate(spec.get("endpoints") or []):
            if isinstance(e, dict):
                _locality_value(e.get("locality"), f"spec.endpoints[{i}].locality", report)
    elif kind == "WorkloadEntry":
        _locality_value(spec.get("locality"), "spec.locality", report)
    elif kind == "Sidecar":
        _sidecar_checks(spec, report)
        _sidecar_port_checks(spec, report)
