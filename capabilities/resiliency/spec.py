"""Dapr Resiliency documents (read by capabilities.daprspec) merged, and one Policy per target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capabilities.config.documents import ConfigError
from capabilities.daprspec import (
    TRIP_FORM,
    CircuitBreakerSpec,
    PolicyNames,
    RetrySpec,
    SpecError,
    document_source,
    parse_document,
)
from capabilities.resiliency.policy import NOOP, CircuitBreaker, Policy


class Resiliency:
    """All Resiliency documents merged (a later document's policy of the same name wins, as in daprd);
    policies are built once per target so breakers keep their state."""

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.timeouts: dict[str, float] = {}
        self.retries: dict[str, RetrySpec] = {}
        self.breakers: dict[str, CircuitBreakerSpec] = {}
        self.targets: dict[str, PolicyNames] = {}  # "components/<name>/outbound", "apps/<id>" -> target
        self._policies: dict[str, Policy] = {}
        for doc in docs or []:
            self._add(doc)

    def _add(self, doc: dict[str, Any]) -> None:
        src = document_source(doc)
        try:
            spec = parse_document(doc, src)
        except SpecError as exc:
            raise ConfigError(str(exc)) from None
        for name, breaker in spec.policies.circuit_breakers.items():
            if breaker.failures_to_trip is None:  # Dapr takes any CEL expression; we run only this one
                where = f"{src}: spec.policies.circuitBreakers.{name}.trip"
                raise ConfigError(f"{where}: supported form is {TRIP_FORM!r}, got {breaker.trip!r}")
        self.timeouts.update(spec.policies.timeouts)
        self.retries.update(spec.policies.retries)
        self.breakers.update(spec.policies.circuit_breakers)
        for app_id, target in spec.targets.apps.items():
            self._add_target(f"apps/{app_id}", target, f"{src}: spec.targets.apps.{app_id}")
        for comp, directions in spec.targets.components.items():
            for direction, names in (("outbound", directions.outbound), ("inbound", directions.inbound)):
                if names is not None:
                    where = f"{src}: spec.targets.components.{comp}.{direction}"
                    self._add_target(f"components/{comp}/{direction}", names, where)

    def _add_target(self, key: str, target: PolicyNames, where: str) -> None:
        known: dict[str, Mapping[str, object]] = {
            "timeouts": self.timeouts,
            "retries": self.retries,
            "circuitBreakers": self.breakers,
        }
        for field, kind, name in target.references():
            if name not in known[kind]:
                raise ConfigError(f"{where}.{field}: policy {name!r} is not defined under spec.policies")
        self.targets[key] = target

    def _policy(self, key: str) -> Policy:
        if key in self._policies:
            return self._policies[key]
        target = self.targets.get(key)
        if target is None:
            return NOOP
        timeout_s = self.timeouts.get(target.timeout or "")
        policy = Policy(
            timeout_s=timeout_s if timeout_s else None,  # Dapr: a zero timeout is no timeout
            retry=self.retries.get(target.retry or ""),
            breaker=self._breaker(key, target.circuit_breaker),
        )
        self._policies[key] = policy
        return policy

    def _breaker(self, key: str, name: str | None) -> CircuitBreaker | None:
        spec = self.breakers.get(name or "")
        if spec is None or spec.failures_to_trip is None:
            return None
        return CircuitBreaker(
            f"{key}:{name}",
            trip_after=spec.failures_to_trip - 1,  # the breaker opens at more than trip_after failures
            timeout_s=spec.timeout_s,
            max_requests=spec.max_requests,
            interval_s=spec.interval_s,
        )

    def for_component(self, name: str, direction: str = "outbound") -> Policy:
        if direction not in ("outbound", "inbound"):
            raise ValueError(f"direction must be outbound or inbound, got {direction!r}")
        return self._policy(f"components/{name}/{direction}")

    def for_app(self, app_id: str) -> Policy:
        return self._policy(f"apps/{app_id}")
