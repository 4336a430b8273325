"""The Dapr Resiliency document (dapr.io/v1alpha1): named policies and the targets that use them.

Defaults and meanings are Dapr's (docs: operations/resiliency/policies): retries constant (duration 5s) or
exponential (initialInterval 500ms, maxInterval 60s), maxRetries -1 = forever and 0 = no retry; circuit
breakers maxRequests 1, interval 0s (counts never clear), timeout 60s. A field that cannot be read raises
SpecError naming it. Policy names that targets use are not checked here: daprd merges the policies of all
documents, so whoever merges them checks the references (`PolicyNames.references`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from capabilities.daprspec.durations import parse_duration
from capabilities.daprspec.errors import SpecError

T = TypeVar("T")

RETRY_POLICIES = ("constant", "exponential")
TRIP_FORM = "consecutiveFailures > N"
_TRIP = re.compile(r"^\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*$")
_CODE_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
HTTP_CODES = (100, 599)  # matching.httpStatusCodes: Dapr's valid values
GRPC_CODES = (0, 16)  # matching.gRPCStatusCodes
BREAKER_TIMEOUT_S = 60.0  # gobreaker: a timeout of 0 (or unset) means 60 s


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A retry policy. `delay` is Dapr's back-off (dapr/kit retry: x1.5 per attempt, jitter +-50 %, capped
    at maxInterval); `multiplier` and `randomization` are not document fields."""

    policy: str = "constant"  # constant | exponential
    duration_s: float = 5.0  # constant delay
    initial_interval_s: float = 0.5  # exponential
    max_interval_s: float = 60.0
    max_retries: int = -1  # negative: forever; 0: as if no retry policy were set
    multiplier: float = 1.5
    randomization: float = 0.5
    http_status_codes: tuple[int, ...] = ()  # matching.httpStatusCodes, ranges expanded; empty: all
    grpc_status_codes: tuple[int, ...] = ()  # matching.gRPCStatusCodes

    def delay(self, attempt: int) -> float:
        if self.policy == "constant":
            return self.duration_s
        base = min(self.max_interval_s, self.initial_interval_s * self.multiplier**attempt)
        spread = base * self.randomization
        return max(0.0, min(self.max_interval_s, base + random.uniform(-spread, spread)))

    def allows(self, retries_done: int) -> bool:
        return self.max_retries < 0 or retries_done < self.max_retries


@dataclass(frozen=True, slots=True)
class CircuitBreakerSpec:
    trip: str | None  # the CEL expression as written (None: not set)
    failures_to_trip: int | None  # consecutive failures that open it; None: `trip` is not TRIP_FORM
    max_requests: int = 1  # calls let through while half-open (0 counts as 1)
    interval_s: float = 0.0  # period after which the closed breaker clears its counts; 0: never
    timeout_s: float = BREAKER_TIMEOUT_S  # open -> half-open


@dataclass(frozen=True, slots=True)
class PolicyNames:
    """The policies one target uses, by name (None: that kind of policy is not set)."""

    timeout: str | None = None
    retry: str | None = None
    circuit_breaker: str | None = None

    def references(self) -> Iterator[tuple[str, str, str]]:
        """(document field, policy kind under spec.policies, name) of each policy set."""
        for doc_field, kind, name in (
            ("timeout", "timeouts", self.timeout),
            ("retry", "retries", self.retry),
            ("circuitBreaker", "circuitBreakers", self.circuit_breaker),
        ):
            if name is not None:
                yield doc_field, kind, name


@dataclass(frozen=True, slots=True)
class ActorTarget(PolicyNames):
    circuit_breaker_scope: str = ""  # type | id | both


@dataclass(frozen=True, slots=True)
class ComponentTarget:
    outbound: PolicyNames | None = None  # calls to the component
    inbound: PolicyNames | None = None  # the component's calls to the app (subscriptions, input bindings)


def _frozen(items: Mapping[str, T] | None = None) -> Mapping[str, T]:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True, slots=True)
class Policies:
    timeouts: Mapping[str, float] = field(default_factory=_frozen)  # seconds
    retries: Mapping[str, RetrySpec] = field(default_factory=_frozen)
    circuit_breakers: Mapping[str, CircuitBreakerSpec] = field(default_factory=_frozen)

    def defines(self, kind: str, name: str) -> bool:
        known = {"timeouts": self.timeouts, "retries": self.retries, "circuitBreakers": self.circuit_breakers}
        return name in known[kind]


@dataclass(frozen=True, slots=True)
class Targets:
    apps: Mapping[str, PolicyNames] = field(default_factory=_frozen)  # by app id
    actors: Mapping[str, ActorTarget] = field(default_factory=_frozen)  # by actor type
    components: Mapping[str, ComponentTarget] = field(default_factory=_frozen)  # by component name


@dataclass(frozen=True, slots=True)
class ResiliencySpec:
    """The `spec` of one Resiliency document."""

    policies: Policies = field(default_factory=Policies)
    targets: Targets = field(default_factory=Targets)


def document_source(doc: Mapping[str, Any]) -> str:
    """How errors name a Resiliency document given as a mapping: "Resiliency 'name'"."""
    meta = doc.get("metadata") or {}
    return f"Resiliency {meta.get('name', '?')!r}" if isinstance(meta, Mapping) else "Resiliency"


def parse_document(doc: Mapping[str, Any], source: str = "") -> ResiliencySpec:
    """The spec of a whole Resiliency document (apiVersion, kind, metadata, spec, scopes)."""
    return parse_resiliency(doc.get("spec"), source or document_source(doc))


def parse_resiliency(spec: object, source: str = "") -> ResiliencySpec:
    """Read a Resiliency `spec`. Raises SpecError naming `source`, the field path and the reason."""
    try:
        body = _mapping(spec, "spec", "with policies and targets")
        policies = _mapping(body.get("policies"), "spec.policies", "with timeouts, retries, circuitBreakers")
        targets = _mapping(body.get("targets"), "spec.targets", "with apps, actors, components")
        return ResiliencySpec(_policies(policies), _targets(targets))
    except SpecError as exc:
        raise exc.within(source) from None


def trip_threshold(trip: object) -> int | None:
    """Consecutive failures that open a breaker whose trip is TRIP_FORM: "> N" -> N+1, ">= N" -> N (at
    least 1); any other expression (Dapr accepts any CEL) -> None."""
    found = _TRIP.match(str(trip or ""))
    if found is None:
        return None
    return max(int(found.group(2)) + (1 if found.group(1) == ">" else 0), 1)


def parse_retry(raw: object, where: str) -> RetrySpec:
    spec = _mapping(raw, where, "")
    policy = str(spec.get("policy", "constant"))
    if policy not in RETRY_POLICIES:
        raise SpecError(f"{where}.policy", f"must be constant or exponential, got {policy!r}")
    match = f"{where}.matching"
    matching = _mapping(spec.get("matching"), match, "with httpStatusCodes, gRPCStatusCodes")
    return RetrySpec(
        policy=policy,
        max_retries=_integer(spec.get("maxRetries"), -1, f"{where}.maxRetries"),
        duration_s=_duration(spec.get("duration"), 5.0, f"{where}.duration"),
        initial_interval_s=_duration(spec.get("initialInterval"), 0.5, f"{where}.initialInterval"),
        max_interval_s=_duration(spec.get("maxInterval"), 60.0, f"{where}.maxInterval"),
        http_status_codes=_codes(matching.get("httpStatusCodes"), HTTP_CODES, f"{match}.httpStatusCodes"),
        grpc_status_codes=_codes(matching.get("gRPCStatusCodes"), GRPC_CODES, f"{match}.gRPCStatusCodes"),
    )


def parse_circuit_breaker(raw: object, where: str) -> CircuitBreakerSpec:
    spec = _mapping(raw, where, "")
    trip = spec.get("trip")
    return CircuitBreakerSpec(
        trip=None if trip is None else str(trip),
        failures_to_trip=trip_threshold(trip),
        max_requests=_integer(spec.get("maxRequests"), 1, f"{where}.maxRequests", minimum=0),
        interval_s=_duration(spec.get("interval"), 0.0, f"{where}.interval"),
        timeout_s=_duration(spec.get("timeout"), BREAKER_TIMEOUT_S, f"{where}.timeout") or BREAKER_TIMEOUT_S,
    )


def _policies(raw: Mapping[str, Any]) -> Policies:
    where = "spec.policies"
    return Policies(
        timeouts=_named(raw.get("timeouts"), f"{where}.timeouts", lambda v, w: parse_duration(v, field=w)),
        retries=_named(raw.get("retries"), f"{where}.retries", parse_retry),
        circuit_breakers=_named(
            raw.get("circuitBreakers"), f"{where}.circuitBreakers", parse_circuit_breaker
        ),
    )


def _targets(raw: Mapping[str, Any]) -> Targets:
    where = "spec.targets"
    return Targets(
        apps=_named(raw.get("apps"), f"{where}.apps", _policy_names),
        actors=_named(raw.get("actors"), f"{where}.actors", _actor),
        components=_named(raw.get("components"), f"{where}.components", _component),
    )


def _named(raw: object, where: str, parse: Callable[[Any, str], T]) -> Mapping[str, T]:
    """A name -> value section, each value read by `parse` (names as text: YAML may read `3:` as a number)."""
    section = _mapping(raw, where, "of names")
    return _frozen({str(name): parse(value, f"{where}.{name}") for name, value in section.items()})


def _policy_names(raw: object, where: str) -> PolicyNames:
    target = _target_mapping(raw, where)
    return PolicyNames(
        _name(target.get("timeout"), f"{where}.timeout"),
        _name(target.get("retry"), f"{where}.retry"),
        _name(target.get("circuitBreaker"), f"{where}.circuitBreaker"),
    )


def _actor(raw: object, where: str) -> ActorTarget:
    names = _policy_names(raw, where)  # checks that it is a mapping
    scope = _name(_target_mapping(raw, where).get("circuitBreakerScope"), f"{where}.circuitBreakerScope")
    return ActorTarget(names.timeout, names.retry, names.circuit_breaker, scope or "")


def _component(raw: object, where: str) -> ComponentTarget:
    directions = _mapping(raw, where, "with outbound and/or inbound")
    outbound, inbound = directions.get("outbound"), directions.get("inbound")
    return ComponentTarget(
        outbound=None if outbound is None else _policy_names(outbound, f"{where}.outbound"),
        inbound=None if inbound is None else _policy_names(inbound, f"{where}.inbound"),
    )


def _target_mapping(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError(where, "must be a mapping with timeout/retry/circuitBreaker")
    return raw


def _mapping(raw: object, where: str, what: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(where, f"must be a mapping{' ' + what if what else ''}, got {type(raw).__name__}")
    return raw


def _name(raw: object, where: str) -> str | None:
    if raw is None or raw == "":
        return None  # daprd: an empty name is no policy
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise SpecError(where, f"must be a policy name, got {raw!r}")
    return str(raw)


def _duration(raw: object, default_s: float, where: str) -> float:
    return default_s if raw is None else parse_duration(raw, field=where)


def _integer(raw: object, default: int, where: str, minimum: int | None = None) -> int:
    if raw is None:
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw)
    else:
        raise SpecError(where, f"must be an integer, got {raw!r}")
    if minimum is not None and value < minimum:
        raise SpecError(where, f"must be {minimum} or more, got {value}")
    return value


def _codes(raw: object, bounds: tuple[int, int], where: str) -> tuple[int, ...]:
    """Codes of "429,500-503" in order: (429, 500, 501, 502, 503); empty or unset: () (every code)."""
    if raw is None:
        return ()
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise SpecError(where, f"must be a comma-separated list of codes and ranges, got {raw!r}")
    text = str(raw).strip()
    if not text:
        return ()
    low, high = bounds
    codes: list[int] = []
    for part in text.split(","):
        found = _CODE_RANGE.fullmatch(part.strip())
        first, last = (int(found.group(1)), int(found.group(2) or found.group(1))) if found else (0, -1)
        if not found or not low <= first <= last <= high:
            reason = f"{part.strip()!r} is not a code or a range 'start-end' within {low}-{high}"
            raise SpecError(where, reason)
        codes += range(first, last + 1)
    return tuple(codes)
