"""Resiliency: parsing Dapr Resiliency docs, and timeout / retry / circuit breaker behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from capabilities.config.documents import ConfigError
from capabilities.errors import DaprError
from capabilities.resiliency import CircuitBreaker, CircuitOpenError, Policy, Resiliency, RetrySpec
from capabilities.resiliency.policy import PolicyTimeoutError

DOC = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Resiliency",
    "metadata": {"name": "r"},
    "spec": {
        "policies": {
            "timeouts": {"fast": "50ms"},
            "retries": {"three": {"policy": "constant", "duration": "1ms", "maxRetries": 3}},
            "circuitBreakers": {"cb": {"trip": "consecutiveFailures > 2", "timeout": "30s"}},
        },
        "targets": {
            "components": {
                "store": {"outbound": {"timeout": "fast", "retry": "three", "circuitBreaker": "cb"}}
            },
            "apps": {"other": {"retry": "three"}},
        },
    },
}


class Flaky:
    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.exc = exc or ConnectionError("connection refused")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


async def no_sleep(_: float) -> None:
    return None


async def test_retry_until_success() -> None:
    flaky = Flaky(2)
    policy = Policy(retry=RetrySpec(duration_s=0, max_retries=3), sleep=no_sleep)
    assert await policy.run(flaky) == "ok" and flaky.calls == 3


async def test_retry_gives_up_after_max_retries() -> None:
    flaky = Flaky(10)
    with pytest.raises(ConnectionError):
        await Policy(retry=RetrySpec(duration_s=0, max_retries=2), sleep=no_sleep).run(flaky)
    assert flaky.calls == 3


async def test_client_errors_are_not_retried() -> None:
    flaky = Flaky(5, DaprError("ERR_MALFORMED_REQUEST", "bad", 400))
    with pytest.raises(DaprError):
        await Policy(retry=RetrySpec(duration_s=0, max_retries=5), sleep=no_sleep).run(flaky)
    assert flaky.calls == 1


async def test_timeout() -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(PolicyTimeoutError, match=r"timed out after 0\.05s"):
        await Policy(timeout_s=0.05).run(slow)


async def test_circuit_breaker_opens_then_half_opens_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker("cb", trip_after=2, timeout_s=10, clock=lambda: now[0])
    policy = Policy(breaker=breaker)
    flaky = Flaky(3)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await policy.run(flaky)
    with pytest.raises(CircuitOpenError):
        await policy.run(flaky)
    assert flaky.calls == 3  # not attempted while open
    now[0] = 11.0  # after the open timeout one trial call goes through
    assert await policy.run(flaky) == "ok"
    assert breaker.state.value == "closed"


def test_exponential_backoff_is_bounded() -> None:
    spec = RetrySpec(policy="exponential", initial_interval_s=0.1, max_interval_s=1.0, randomization=0)
    assert [round(spec.delay(n), 3) for n in range(3)] == [0.1, 0.15, 0.225]
    assert spec.delay(50) == 1.0


def test_resiliency_targets() -> None:
    res = Resiliency([DOC])
    policy = res.for_component("store", "outbound")
    assert policy.timeout_s == 0.05 and policy.retry.max_retries == 3 and policy.breaker.trip_after == 2
    assert res.for_component("store", "outbound") is policy  # breaker state is kept
    assert res.for_component("other", "outbound").is_noop
    assert res.for_app("other").retry is not None


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"timeouts": {"fast": "soon"}}, "timeouts.fast"),
        ({"retries": {"three": {"policy": "random"}}}, "retries.three.policy"),
        ({"circuitBreakers": {"cb": {"trip": "requests > 5"}}}, "circuitBreakers.cb.trip"),
        # read by capabilities.daprspec: refused, where they used to be taken or crash with a bare error
        ({"timeouts": {"fast": "nan"}}, "timeouts.fast"),
        ({"timeouts": {"fast": "-5"}}, "timeouts.fast"),
        ({"timeouts": ["5s"]}, "spec.policies.timeouts"),
        ({"retries": {"three": {"matching": {"httpStatusCodes": "5xx"}}}}, "three.matching.httpStatusCodes"),
        (
            {"circuitBreakers": {"cb": {"trip": "consecutiveFailures > 2", "maxRequests": "many"}}},
            "circuitBreakers.cb.maxRequests",
        ),
    ],
)
def test_bad_policies_are_named(patch: dict[str, Any], fragment: str) -> None:
    doc = {**DOC, "spec": {**DOC["spec"], "policies": {**DOC["spec"]["policies"], **patch}}}
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        Resiliency([doc])


def _store_policy(policies: dict[str, Any], target: dict[str, str]) -> Any:
    spec = {"policies": policies, "targets": {"components": {"store": {"outbound": target}}}}
    return Resiliency([{**DOC, "spec": spec}]).for_component("store")


async def test_a_zero_timeout_is_no_timeout() -> None:
    """Dapr applies a timeout only above zero; "0s" used to time out every call at once."""
    policy = _store_policy({"timeouts": {"none": "0s"}}, {"timeout": "none"})

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    assert await policy.run(quick) == "ok"


def test_a_zero_breaker_timeout_keeps_it_open_for_dapr_s_60s() -> None:
    """gobreaker (Dapr) reads a timeout of 0 as 60 s; the breaker used to half-open at once."""
    breaker_doc = {"trip": "consecutiveFailures > 0", "timeout": "0s"}
    policy = _store_policy({"circuitBreakers": {"cb": breaker_doc}}, {"circuitBreaker": "cb"})
    assert policy.breaker is not None and policy.breaker.timeout_s == 60.0
    policy.breaker.before_call()
    policy.breaker.on_failure()  # "> 0": the first failure opens it
    with pytest.raises(CircuitOpenError):
        policy.breaker.before_call()


def test_unknown_policy_reference() -> None:
    doc = {**DOC, "spec": {**DOC["spec"], "targets": {"components": {"s": {"outbound": {"retry": "nope"}}}}}}
    with pytest.raises(ConfigError, match="policy 'nope' is not defined"):
        Resiliency([doc])


async def test_resiliency_applies_to_state_calls(make_sidecar: Any, docs_component: Any) -> None:
    client, runtime = await make_sidecar([docs_component("store", "state.in-memory"), DOC])
    store = runtime.component("state", "store")
    real_get = store.get
    calls = {"n": 0}

    async def flaky_get(key: str) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("backend hiccup")
        return await real_get(key)

    store.get = flaky_get
    resp = await client.get("/v1.0/state/store/k")
    assert resp.status == 204 and calls["n"] == 3  # two retries hid the failures
    calls["n"] = -100  # fail every call from now on
    first = await client.get("/v1.0/state/store/k")
    assert first.status == 500
    assert calls["n"] == -97  # 3 consecutive failures trip the breaker ("> 2"), which stops the retries
    opened = await client.get("/v1.0/state/store/k")
    body = await opened.json()
    assert (
        opened.status == 500 and "circuit breaker" in body["message"] and body["errorCode"] == "ERR_STATE_GET"
    )
    assert calls["n"] == -97  # not attempted while open
