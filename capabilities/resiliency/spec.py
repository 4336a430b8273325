"""Parse Dapr Resiliency documents (dapr.io/v1alpha1) and hand out one Policy per target."""

from __future__ import annotations

import re
from typing import Any

from capabilities.config.documents import ConfigError
from capabilities.config.durations import parse_duration
from capabilities.resiliency.policy import NOOP, CircuitBreaker, Policy, RetrySpec

_TRIP = re.compile(r"^\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*$")


def _source(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"Resiliency {meta.get('name', '?')!r}" if isinstance(meta, dict) else "Resiliency"


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value, field=where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def parse_retry(spec: dict[str, Any], where: str) -> RetrySpec:
    policy = str(spec.get("policy", "constant"))
    if policy not in ("constant", "exponential"):
        raise ConfigError(f"{where}.policy: must be constant or exponential, got {policy!r}")
    try:
        max_retries = int(spec.get("maxRetries", -1))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.maxRetries: must be an integer, got {spec.get('maxRetries')!r}") from None
    return RetrySpec(
        policy=policy,
        duration_s=_duration(spec.get("duration", "5s"), f"{where}.duration"),
        initial_interval_s=_duration(spec.get("initialInterval", "500ms"), f"{where}.initialInterval"),
        max_interval_s=_duration(spec.get("maxInterval", "60s"), f"{where}.maxInterval"),
        max_retries=max_retries,
    )


def parse_trip(expr: Any, where: str) -> int:
    match = _TRIP.match(str(expr or ""))
    if not match:
        raise ConfigError(f"{where}.trip: supported form is 'consecutiveFailures > N', got {expr!r}")
    threshold = int(match.group(2))
    return threshold - 1 if match.group(1) == ">=" else threshold


class Resiliency:
    """All Resiliency documents merged; policies are built once per target so breakers keep their state."""

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.timeouts: dict[str, float] = {}
        self.retries: dict[str, RetrySpec] = {}
        self.breakers: dict[str, dict[str, Any]] = {}
        self.targets: dict[str, dict[str, Any]] = {}  # "components/<name>/outbound", "apps/<id>" -> target
        self._policies: dict[str, Policy] = {}
        for doc in docs or []:
            self._add(doc)

    def _add(self, doc: dict[str, Any]) -> None:
        src = _source(doc)
        spec = doc.get("spec") or {}
        policies = spec.get("policies") or {}
        for name, value in (policies.get("timeouts") or {}).items():
            self.timeouts[name] = _duration(value, f"{src}: spec.policies.timeouts.{name}")
        for name, value in (policies.get("retries") or {}).items():
            if not isinstance(value, dict):
                raise ConfigError(f"{src}: spec.policies.retries.{name}: must be a mapping")
            self.retries[name] = parse_retry(value, f"{src}: spec.policies.retries.{name}")
        for name, value in (policies.get("circuitBreakers") or {}).items():
            where = f"{src}: spec.policies.circuitBreakers.{name}"
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: must be a mapping")
            self.breakers[name] = {
                "trip_after": parse_trip(value.get("trip"), where),
                "timeout_s": _duration(value.get("timeout", "60s"), f"{where}.timeout"),
                "interval_s": _duration(value.get("interval", "0s"), f"{where}.interval"),
                "max_requests": int(value.get("maxRequests", 1)),
            }
        targets = spec.get("targets") or {}
        for app_id, target in (targets.get("apps") or {}).items():
            self._add_target(f"apps/{app_id}", target, f"{src}: spec.targets.apps.{app_id}")
        for comp, directions in (targets.get("components") or {}).items():
            for direction in ("outbound", "inbound"):
                if isinstance(directions, dict) and direction in directions:
                    where = f"{src}: spec.targets.components.{comp}.{direction}"
                    self._add_target(f"components/{comp}/{direction}", directions[direction], where)

    def _add_target(self, key: str, target: Any, where: str) -> None:
        if not isinstance(target, dict):
            raise ConfigError(f"{where}: must be a mapping with timeout/retry/circuitBreaker")
        for field, known in (
            ("timeout", self.timeouts),
            ("retry", self.retries),
            ("circuitBreaker", self.breakers),
        ):
            name = target.get(field)
            if name is not None and name not in known:
                raise ConfigError(f"{where}.{field}: policy {name!r} is not defined under spec.policies")
        self.targets[key] = target

    def _policy(self, key: str) -> Policy:
        if key in self._policies:
            return self._policies[key]
        target = self.targets.get(key)
        if target is None:
            return NOOP
        breaker_name = target.get("circuitBreaker")
        breaker = (
            CircuitBreaker(f"{key}:{breaker_name}", **self.breakers[breaker_name]) if breaker_name else None
        )
        policy = Policy(
            timeout_s=self.timeouts.get(target.get("timeout", "")),
            retry=self.retries.get(target.get("retry", "")),
            breaker=breaker,
        )
        self._policies[key] = policy
        return policy

    def for_component(self, name: str, direction: str = "outbound") -> Policy:
        if direction not in ("outbound", "inbound"):
            raise ValueError(f"direction must be outbound or inbound, got {direction!r}")
        return self._policy(f"components/{name}/{direction}")

    def for_app(self, app_id: str) -> Policy:
        return self._policy(f"apps/{app_id}")
