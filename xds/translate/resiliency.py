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

The documents are read by `capabilities.daprspec`, as the capability service reads them (same durations,
defaults and refusals). One it refuses is not applied here either (daprd skips a Resiliency it cannot read)
and is reported as a warning naming the field; this module only maps what was read to Envoy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

from envoy_data_plane.envoy.config.cluster import v3 as clu
from envoy_data_plane.envoy.config.route import v3 as rte

from capabilities.daprspec import (
    TRIP_FORM,
    CircuitBreakerSpec,
    ResiliencySpec,
    RetrySpec,
    SpecError,
    parse_resiliency,
)
from xds.diagnostics import Diagnostic, Severity
from xds.model.resources import Resiliency
from xds.proxy import ProxyIdentity

T = TypeVar("T")

UNLIMITED_RETRIES = 10  # Envoy needs a number; Dapr's maxRetries -1 (retry forever) is capped here
RETRY_ON_ALL = "5xx,connect-failure,refused-stream,reset,unavailable"
RETRY_ON_CODES = "retriable-status-codes,connect-failure,refused-stream,reset,unavailable"
# Envoy cannot express a zero back-off or ejection time: a zero in the document takes these (Dapr's defaults)
DEFAULT_CONSTANT = timedelta(seconds=5)
DEFAULT_INITIAL = timedelta(milliseconds=500)
DEFAULT_MAX_INTERVAL = timedelta(seconds=60)
DEFAULT_BREAKER_TIMEOUT = timedelta(seconds=60)
DEFAULT_BREAKER_INTERVAL = timedelta(seconds=10)  # Envoy's default outlier interval (Dapr: 0 = never clear)


@dataclass(frozen=True, slots=True)
class EnvoyRetry:
    """A Dapr retry policy as an Envoy RetryPolicy needs it."""

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
    retry: EnvoyRetry | None = None
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


@lru_cache(maxsize=1024)
def _read(spec_json: str) -> ResiliencySpec | SpecError:
    """The document's spec as Dapr reads it, or why it cannot be read (daprd then skips the document)."""
    try:
        return parse_resiliency(json.loads(spec_json or "{}"))
    except SpecError as exc:
        return SpecError(exc.field, exc.reason)  # a fresh one: the cache keeps no traceback and frames
    except ValueError as exc:  # JSON the model layer never writes
        return SpecError("spec", str(exc))


def _td(seconds: float) -> timedelta:
    """Seconds as Envoy's microsecond timedelta (below half a microsecond: zero, which is falsy)."""
    return timedelta(microseconds=round(seconds * 1e6))


def retry_spec(spec: RetrySpec) -> EnvoyRetry | None:
    if spec.max_retries == 0:
        return None  # Dapr: 0 = as if no retry policy were set
    num = UNLIMITED_RETRIES if spec.max_retries < 0 else spec.max_retries
    codes = spec.http_status_codes
    if spec.policy == "exponential":
        base = _td(spec.initial_interval_s) or DEFAULT_INITIAL
        top = _td(spec.max_interval_s) or DEFAULT_MAX_INTERVAL
        return EnvoyRetry(num, base, max(base, top), codes)
    step = _td(spec.duration_s) or DEFAULT_CONSTANT
    return EnvoyRetry(num, step, step, codes)


def breaker_spec(spec: CircuitBreakerSpec) -> BreakerSpec | None:
    if spec.failures_to_trip is None:
        return None
    interval = _td(spec.interval_s) or DEFAULT_BREAKER_INTERVAL
    ejection = _td(spec.timeout_s) or DEFAULT_BREAKER_TIMEOUT
    return BreakerSpec(spec.failures_to_trip, interval, ejection)


def _named(policies: Mapping[str, T], name: str | None) -> T | None:
    """The policy a target names; an unknown name applies nothing (as in daprd)."""
    return None if name is None else policies.get(name)


def policy_for(resiliency: Resiliency, target_ids: Iterable[str]) -> InvokePolicy | None:
    spec = _read(resiliency.spec_json)
    if isinstance(spec, SpecError):
        return None  # reported by check_resiliencies
    apps = spec.targets.apps
    target = next((apps[i] for i in target_ids if i in apps), None)
    if target is None:
        return None
    policies = spec.policies
    timeout = _named(policies.timeouts, target.timeout)
    retry = _named(policies.retries, target.retry)
    breaker = _named(policies.circuit_breakers, target.circuit_breaker)
    return InvokePolicy(
        source=resiliency.meta.ref,
        timeout=None if timeout is None else _td(timeout) or None,  # Dapr: zero is no timeout
        retry=None if retry is None else retry_spec(retry),
        breaker=None if breaker is None else breaker_spec(breaker),
    )


def invoke_policy(resiliencies: Iterable[Resiliency], target_ids: Iterable[str]) -> InvokePolicy | None:
    """The policy of the first (already applicable) Resiliency that targets one of the app's ids."""
    ids = tuple(target_ids)
    return next((p for r in resiliencies if (p := policy_for(r, ids)) is not None), None)


def retry_policy(spec: EnvoyRetry) -> rte.RetryPolicy:
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
    """Warnings for what the invoke translation cannot express or read (skipped, never a crash)."""
    out: list[Diagnostic] = []
    for r in resiliencies:
        spec = _read(r.spec_json)
        if isinstance(spec, SpecError):
            message = (
                f"{spec.reason}: this Resiliency is not applied to service invocation (daprd skips a "
                "Resiliency it cannot read; the capability service refuses it)"
            )
            invalid = Diagnostic(r.meta.location, spec.field, message, Severity.WARNING, "resiliency-invalid")
            out.append(invalid)
            continue
        for name, breaker in sorted(spec.policies.circuit_breakers.items()):
            if breaker.failures_to_trip is None:
                out.append(
                    Diagnostic(
                        r.meta.location,
                        f"spec.policies.circuitBreakers.{name}.trip",
                        f"{breaker.trip!r} is not {TRIP_FORM!r}: no outlier detection for service invocation "
                        "(the capability service refuses such a breaker)",
                        Severity.WARNING,
                        "resiliency-trip",
                    )
                )
    return out
