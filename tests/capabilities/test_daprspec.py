"""capabilities.daprspec: Dapr durations and the Resiliency document, read once for both products."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from capabilities.daprspec import (
    ActorTarget,
    CircuitBreakerSpec,
    ComponentTarget,
    PolicyNames,
    RetrySpec,
    SpecError,
    parse_document,
    parse_duration,
    parse_resiliency,
    trip_threshold,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("2.s", 2.0),
        ("100ns", 1e-7),
        ("10us", 1e-5),
        ("10µs", 1e-5),  # micro sign
        ("10μs", 1e-5),  # Greek mu: Go accepts both
        ("+5s", 5.0),
        ("0", 0.0),
        ("  5s ", 5.0),
        # beyond Go: a bare number is seconds (the capability service has always read it so)
        ("3", 3.0),
        (3, 3.0),
        (2.5, 2.5),
    ],
)
def test_durations_dapr_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("soon", "is not a duration"),
        ("5 seconds", "is not a duration"),
        ("5s garbage", "is not a duration"),
        ("5d", "is not a duration"),
        ("1e3", "is not a duration"),
        ("inf", "is not a duration"),
        ("nan", "is not a duration"),
        ("-5s", "is negative"),
        ("-5", "is negative"),
        (-1, "zero or more seconds"),
        (float("inf"), "zero or more seconds"),
        (float("nan"), "zero or more seconds"),
        (True, "expected a duration"),
        (None, "expected a duration"),
        (["5s"], "expected a duration"),
    ],
)
def test_duration_refusals_name_the_field(value: object, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_duration(value, field="spec.policies.timeouts.fast")
    assert info.value.field == "spec.policies.timeouts.fast" and reason in info.value.reason
    assert str(info.value).startswith("spec.policies.timeouts.fast: ")


# The complete example policy of the Dapr docs (operations/resiliency/resiliency-overview), plus codes.
DOC: dict[str, Any] = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Resiliency",
    "metadata": {"name": "myresiliency"},
    "scopes": ["app1", "app2"],
    "spec": {
        "policies": {
            "timeouts": {"general": "5s", "important": "60s", "largeResponse": "10s"},
            "retries": {
                "pubsubRetry": {"policy": "constant", "duration": "5s", "maxRetries": 10},
                "retryForever": {"policy": "exponential", "maxInterval": "15s", "maxRetries": -1},
                "important": {"policy": "constant", "duration": "5s", "maxRetries": 30},
                "someOperation": {"policy": "exponential", "maxInterval": "15s"},
                "largeResponse": {"policy": "constant", "duration": "5s", "maxRetries": 3},
                "codes": {"matching": {"httpStatusCodes": "429,500-503", "gRPCStatusCodes": "1-4,14"}},
            },
            "circuitBreakers": {
                "simpleCB": {"maxRequests": 1, "timeout": "30s", "trip": "consecutiveFailures >= 5"},
                "pubsubCB": {
                    "maxRequests": 1, "interval": "8s", "timeout": "45s", "trip": "consecutiveFailures > 8"
                },
                "fancy": {"trip": "requests > 10 && totalFailures > 2"},
            },
        },
        "targets": {
            "apps": {"appB": {"timeout": "general", "retry": "important", "circuitBreaker": "simpleCB"}},
            "actors": {
                "myActorType": {
                    "timeout": "general",
                    "retry": "important",
                    "circuitBreaker": "simpleCB",
                    "circuitBreakerScope": "both",
                    "circuitBreakerCacheSize": 5000,
                }
            },
            "components": {
                "statestore1": {
                    "outbound": {"timeout": "general", "retry": "retryForever", "circuitBreaker": "simpleCB"}
                },
                "pubsub1": {"outbound": {"retry": "pubsubRetry", "circuitBreaker": "pubsubCB"}},
                "pubsub2": {
                    "outbound": {"retry": "pubsubRetry", "circuitBreaker": "pubsubCB"},
                    "inbound": {"timeout": "general", "retry": "important", "circuitBreaker": "pubsubCB"},
                },
            },
        },
    },
}  # fmt: skip


def test_a_full_resiliency_document() -> None:
    spec = parse_document(DOC)
    assert dict(spec.policies.timeouts) == {"general": 5.0, "important": 60.0, "largeResponse": 10.0}
    retries = spec.policies.retries
    assert retries["pubsubRetry"] == RetrySpec(policy="constant", duration_s=5.0, max_retries=10)
    assert retries["retryForever"] == RetrySpec(policy="exponential", max_interval_s=15.0, max_retries=-1)
    assert retries["someOperation"].max_retries == -1  # Dapr's default: forever
    assert retries["someOperation"].initial_interval_s == 0.5
    assert retries["codes"] == RetrySpec(
        http_status_codes=(429, 500, 501, 502, 503), grpc_status_codes=(1, 2, 3, 4, 14)
    )  # constant, 5s, forever: the defaults
    breakers = spec.policies.circuit_breakers
    assert breakers["simpleCB"] == CircuitBreakerSpec("consecutiveFailures >= 5", 5, 1, 0.0, 30.0)
    assert breakers["pubsubCB"] == CircuitBreakerSpec("consecutiveFailures > 8", 9, 1, 8.0, 45.0)
    assert breakers["fancy"].failures_to_trip is None  # valid Dapr (any CEL); each product decides
    assert breakers["fancy"].timeout_s == 60.0 and breakers["fancy"].interval_s == 0.0
    assert spec.targets.apps["appB"] == PolicyNames("general", "important", "simpleCB")
    assert spec.targets.actors["myActorType"] == ActorTarget("general", "important", "simpleCB", "both")
    components = spec.targets.components
    assert components["pubsub1"] == ComponentTarget(outbound=PolicyNames(None, "pubsubRetry", "pubsubCB"))
    assert components["pubsub2"].inbound == PolicyNames("general", "important", "pubsubCB")
    assert list(components["pubsub1"].outbound.references()) == [  # type: ignore[union-attr]
        ("retry", "retries", "pubsubRetry"),
        ("circuitBreaker", "circuitBreakers", "pubsubCB"),
    ]
    assert spec.policies.defines("retries", "codes") and not spec.policies.defines("timeouts", "codes")


def test_the_model_is_frozen() -> None:
    spec = parse_document(DOC)
    with pytest.raises(TypeError):
        spec.policies.timeouts["general"] = 1.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.policies.timeouts = {}  # type: ignore[misc]


def test_an_empty_or_missing_spec_is_an_empty_model() -> None:
    assert parse_resiliency(None) == parse_resiliency({}) == parse_resiliency({"policies": None})
    assert not parse_resiliency(None).targets.apps


def test_zero_breaker_timeout_is_the_60s_default_and_zero_names_are_unset() -> None:
    spec = parse_resiliency(
        {
            "policies": {"circuitBreakers": {"cb": {"trip": "consecutiveFailures > 1", "timeout": "0s"}}},
            "targets": {"apps": {"a": {"timeout": "", "circuitBreaker": "cb"}}},
        }
    )
    assert spec.policies.circuit_breakers["cb"].timeout_s == 60.0  # gobreaker: <= 0 means 60 s
    assert spec.targets.apps["a"] == PolicyNames(None, None, "cb")


def test_trip_expressions() -> None:
    assert trip_threshold("consecutiveFailures > 5") == 6
    assert trip_threshold(" consecutiveFailures>=2 ") == 2
    assert trip_threshold("consecutiveFailures >= 0") == 1
    assert trip_threshold("requests > 10") is None
    assert trip_threshold(None) is None


def _with(path: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


R = "spec.policies.retries."
B = "spec.policies.circuitBreakers.simpleCB"
T = "spec.targets."


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("spec", ["policies"], "must be a mapping"),
        ("spec.policies", "none", "must be a mapping"),
        ("spec.policies.timeouts", ["5s"], "must be a mapping"),
        ("spec.policies.timeouts.general", "soon", "is not a duration"),
        ("spec.policies.timeouts.general", "-5s", "is negative"),
        (R + "important", "fast", "must be a mapping"),
        (R + "important.policy", "random", "must be constant or exponential"),
        (R + "important.maxRetries", "many", "must be an integer"),
        (R + "important.maxRetries", 2.5, "must be an integer"),
        (R + "important.duration", "5 s", "is not a duration"),
        (R + "retryForever.initialInterval", "x", "is not a duration"),
        (R + "retryForever.maxInterval", True, "expected a duration"),
        (R + "codes.matching", "429", "must be a mapping"),
        (R + "codes.matching.httpStatusCodes", "429,abc", "'abc' is not a code or a range"),
        (R + "codes.matching.httpStatusCodes", "503-500", "within 100-599"),
        (R + "codes.matching.httpStatusCodes", "429,600", "within 100-599"),
        (R + "codes.matching.gRPCStatusCodes", "17", "within 0-16"),
        (B, 5, "must be a mapping"),
        (B + ".timeout", "1 min", "is not a duration"),
        (B + ".interval", "-1s", "is negative"),
        (B + ".maxRequests", "one", "must be an integer"),
        (B + ".maxRequests", -1, "must be 0 or more"),
        ("spec.targets", [], "must be a mapping"),
        (T + "apps.appB", "general", "must be a mapping with timeout"),
        (T + "apps.appB.retry", ["important"], "must be a policy name"),
        (T + "actors.myActorType", None, "must be a mapping"),
        (T + "components.pubsub1", "x", "with outbound and/or inbound"),
        (T + "components.pubsub2.inbound", 1, "must be a mapping"),
    ],
)
def test_each_refusal_names_the_document_and_the_field(field: str, value: object, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_document(_with(field, value))
    assert (info.value.source, info.value.field) == ("Resiliency 'myresiliency'", field)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"Resiliency 'myresiliency': {field}: ")


def test_the_source_given_names_the_document() -> None:
    source = "r.yaml: Resiliency default/r"
    with pytest.raises(SpecError) as info:
        parse_document(_with("spec.policies.timeouts.general", "soon"), source)
    assert str(info.value).startswith(f"{source}: spec.policies.timeouts.general: 'soon' is not a duration")
    assert isinstance(SpecError("f", "r"), ValueError)  # callers that catch ValueError keep working
