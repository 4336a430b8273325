"""Dapr Resiliency for service invocation -> Envoy route settings of the Dapr invoke routes.

A Resiliency applies to the CALLING apps in its namespace named in `scopes` (all when empty); its
`targets.apps.<appId>` names a timeout, a retry and a circuit breaker from `policies`. On the Dapr path
these replace the VirtualService's timeout/retries (Dapr's resiliency wins there); plain mesh traffic
keeps the VirtualService's. When several Resiliency documents target the same app, the first by
(namespace, name) wins (deterministic; Dapr merges them, which we do not).

Mapping:
- timeout            -> RouteAction.timeout (Envoy answers 504 when it fires)
- retries            -> RetryPolicy: num_retries = maxRetries (-1, Dapr's "forever", -> UNLIMITED_RETRIES);
                        retry_on = transport failures + 5xx (Dapr retries every HTTP error unless
                        matching.httpStatusCodes lists codes, then only those: retriable-status-codes);
                        constant -> back-off base = max = duration (default 5s);
                        exponential -> base = initialInterval (default 500ms), max = maxInterval (60s)
- circuitBreakers    -> outlier detection on a per-target invoke cluster (see `invoke_cluster_name`):
                        trip "consecutiveFailures > N" -> consecutive_5xx = N+1 (">=" N -> N), interval,
                        base_ejection_time = timeout (default 60s). Other trip expressions are reported
                        (`check_resiliencies`) and the breaker is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.route import v3 as rte

from xds.diagnostics import Diagnostic, Severity
from xds.model.parse import duration
from xds.model.resources import Resiliency
from xds.proxy import ProxyIdentity

UNLIMITED_RETRIES = 10  # Envoy needs a number; Dapr's maxRetries -1 (retry forever) is capped here
RETRY_ON_ALL = "5xx,connect-failure,refused-stream,reset,unavailable"
RETRY_ON_CODES = "retriable-status-codes,connect-failure,refused-stream,reset,unavailable"
DEFAULT_CONSTANT = timedelta(seconds=5)  # Dapr defaults (docs: resiliency policies)
DEFAULT_INITIAL = timedelta(milliseconds=500)
DEFAULT_MAX_INTERVAL = timedelta(seconds=60)
DEFAULT_BREAKER_TIMEOUT = timedelta(seconds=60)
DEFAULT_BREAKER_INTERVAL = timedelta(seconds=10)  # Envoy's default outlier interval (Dapr: 0 = never clear)
_TRIP = re.compile(r"^\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class RetrySpec:
    num_retries: int
    base_interval: timedelta
    max_interval: timedelta
    status_codes: tuple[int, ...] = ()  # empty: every 5xx


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    consecutive_failures: int  # failures that eject the target
    interval: timedelta
    ejection: timedelta


@dataclass(frozen=True, slots=True)
class InvokePolicy:
    """What one Resiliency says about calls to one target app (hashable: a memo key)."""

    source: str  # "Resiliency ns/name"
    timeout: timedelta | None = None
    retry: RetrySpec | None = None
    breaker: BreakerSpec | None = None


def invoke_cluster_name(app_id: str, port: int) -> str:
    return f"dapr-invoke|{app_id}|{port}"


def site_callers(proxy: ProxyIdentity, site_route: str) -> tuple[str, ...]:
    """App ids calling through a Dapr site: the app of a per-app site (`dapr-http|<key>`), else every
    app of the proxy (its `app` label when it lists none)."""
    if "|" in site_route:
        key = site_route.split("|", 1)[1]
        return (key.split("|", 1)[0],)
    names = tuple(a.name for a in proxy.apps)
    return names or tuple(v for k, v in proxy.labels if k == "app")


def applicable(
    resiliencies: Iterable[Resiliency], namespace: str, callers: tuple[str, ...]
) -> tuple[Resiliency, ...]:
    """The Resiliency documents of the callers' namespace whose scopes include one of the callers."""
    return tuple(
        r
        for r in resiliencies
        if r.meta.namespace == namespace and r.target_apps and (not r.scopes or set(r.scopes) & set(callers))
    )


def _spec(r: Resiliency) -> dict[str, Any]:
    try:
        spec = json.loads(r.spec_json or "{}")
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dur(value: Any, default: timedelta | None) -> timedelta | None:
    if value in (None, ""):
        return default
    parsed = duration(str(value))
    return parsed if parsed else default


def _status_codes(text: Any) -> tuple[int, ...]:
    codes: list[int] = []
    for part in str(text or "").split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            codes += range(int(lo), int(hi or lo) + 1)
    return tuple(c for c in codes if 100 <= c <= 599)


def retry_spec(raw: dict[str, Any]) -> RetrySpec | None:
    retries = int(raw.get("maxRetries", -1))
    if retries == 0:
        return None  # Dapr: 0 = as if no retry policy were set
    num = UNLIMITED_RETRIES if retries < 0 else retries
    codes = _status_codes(_dict(raw.get("matching")).get("httpStatusCodes"))
    if str(raw.get("policy", "constant")) == "exponential":
        base = _dur(raw.get("initialInterval"), DEFAULT_INITIAL) or DEFAULT_INITIAL
        top = _dur(raw.get("maxInterval"), DEFAULT_MAX_INTERVAL) or DEFAULT_MAX_INTERVAL
        return RetrySpec(num, base, max(base, top), codes)
    step = _dur(raw.get("duration"), DEFAULT_CONSTANT) or DEFAULT_CONSTANT
    return RetrySpec(num, step, step, codes)


def trip_threshold(trip: Any) -> int | None:
    """consecutiveFailures > N -> N+1 failures eject; >= N -> N; anything else -> None."""
    found = _TRIP.match(str(trip or ""))
    if found is None:
        return None
    n = int(found.group(2)) + (1 if found.group(1) == ">" else 0)
    return max(n, 1)


def breaker_spec(raw: dict[str, Any]) -> BreakerSpec | None:
    threshold = trip_threshold(raw.get("trip"))
    if threshold is None:
        return None
    interval = _dur(raw.get("interval"), DEFAULT_BREAKER_INTERVAL) or DEFAULT_BREAKER_INTERVAL
    ejection = _dur(raw.get("timeout"), DEFAULT_BREAKER_TIMEOUT) or DEFAULT_BREAKER_TIMEOUT
    return BreakerSpec(threshold, interval, ejection)


def policy_for(resiliency: Resiliency, target_ids: Iterable[str]) -> InvokePolicy | None:
    spec = _spec(resiliency)
    apps = _dict(_dict(spec.get("targets")).get("apps"))
    target = next((_dict(apps[i]) for i in target_ids if i in apps), None)
    if target is None:
        return None
    policies = _dict(spec.get("policies"))
    timeouts = _dict(policies.get("timeouts"))
    retries = _dict(policies.get("retries"))
    breakers = _dict(policies.get("circuitBreakers"))
    timeout_name, retry_name, breaker_name = (target.get(k) for k in ("timeout", "retry", "circuitBreaker"))
    return InvokePolicy(
        source=resiliency.meta.ref,
        timeout=_dur(timeouts.get(timeout_name), None) if timeout_name in timeouts else None,
        retry=retry_spec(_dict(retries[retry_name])) if retry_name in retries else None,
        breaker=breaker_spec(_dict(breakers[breaker_name])) if breaker_name in breakers else None,
    )


def invoke_policy(resiliencies: Iterable[Resiliency], target_ids: Iterable[str]) -> InvokePolicy | None:
    """The policy of the first (already applicable) Resiliency that targets one of the app's ids."""
    ids = tuple(target_ids)
    return next((p for r in resiliencies if (p := policy_for(r, ids)) is not None), None)


def retry_policy(spec: RetrySpec) -> rte.RetryPolicy:
    return rte.RetryPolicy(
        retry_on=RETRY_ON_CODES if spec.status_codes else RETRY_ON_ALL,
        num_retries=spec.num_retries,
        retriable_status_codes=list(spec.status_codes),
        retry_back_off=rte.RetryPolicyRetryBackOff(
            base_interval=spec.base_interval, max_interval=spec.max_interval
        ),
    )


def apply(action: rte.RouteAction, policy: InvokePolicy, breaker_cluster: str = "") -> rte.RouteAction:
    """The invoke route's action with the Dapr policy in place of the VirtualService's settings."""
    if policy.timeout is not None:
        action.timeout = policy.timeout
        action.max_grpc_timeout = policy.timeout
    if policy.retry is not None:
        action.retry_policy = retry_policy(policy.retry)
    if breaker_cluster and policy.breaker is not None and action.cluster:
        action.cluster = breaker_cluster  # weighted (VS split) actions keep their clusters
    return action


def outlier_detection(spec: BreakerSpec) -> clu.OutlierDetection:
    return clu.OutlierDetection(
        consecutive_5xx=spec.consecutive_failures,
        consecutive_gateway_failure=spec.consecutive_failures,
        enforcing_consecutive_gateway_failure=100,
        interval=spec.interval,
        base_ejection_time=spec.ejection,
        max_ejection_percent=100,  # Dapr's breaker opens for the whole target
    )


def check_resiliencies(resiliencies: Iterable[Resiliency]) -> list[Diagnostic]:
    """Warnings for what the invoke translation cannot express (the setting is skipped, never a crash)."""
    out: list[Diagnostic] = []
    for r in resiliencies:
        breakers = _dict(_dict(_spec(r).get("policies")).get("circuitBreakers"))
        for name, raw in sorted(breakers.items()):
            trip = _dict(raw).get("trip")
            if trip_threshold(trip) is None:
                out.append(
                    Diagnostic(
                        r.meta.location,
                        f"spec.policies.circuitBreakers.{name}.trip",
                        f"{trip!r} is not 'consecutiveFailures > N': no outlier detection for service "
                        "invocation (the capability service still applies it to component calls)",
                        Severity.WARNING,
                        "resiliency-trip",
                    )
                )
    return out
