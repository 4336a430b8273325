"""Dapr Resiliency: policies (timeouts, retries, circuit breakers) applied to component and app calls."""

from __future__ import annotations

from capabilities.daprspec import RetrySpec
from capabilities.resiliency.policy import (
    NOOP,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    PolicyTimeoutError,
    is_permanent,
)
from capabilities.resiliency.spec import Resiliency

__all__ = [
    "NOOP",
    "CircuitBreaker",
    "CircuitOpenError",
    "Policy",
    "PolicyTimeoutError",
    "Resiliency",
    "RetrySpec",
    "is_permanent",
]
