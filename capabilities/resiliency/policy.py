"""A resiliency Policy: timeout, retry (constant/exponential) and circuit breaker around one async call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from capabilities.daprspec import RetrySpec

T = TypeVar("T")


class CircuitOpenError(Exception):
    """The circuit breaker is open: the call was not attempted."""


class PolicyTimeoutError(TimeoutError):
    pass


def is_permanent(exc: BaseException) -> bool:
    """Errors that a retry cannot fix: caller mistakes (4xx DaprError), ETag conflicts, open circuits."""
    if getattr(exc, "permanent", False) or isinstance(exc, CircuitOpenError):
        return True
    status = getattr(exc, "http_status", None)
    return isinstance(status, int) and status < 500


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Trips after more than `trip_after` consecutive failures (Dapr: trip "consecutiveFailures > N")."""

    def __init__(
        self,
        name: str,
        *,
        trip_after: int,
        timeout_s: float = 60.0,
        max_requests: int = 1,
        interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.trip_after = trip_after
        self.timeout_s = timeout_s
        self.max_requests = max(1, max_requests)
        self.interval_s = interval_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._counts_since = clock()
        self._half_open_in_flight = 0

    def before_call(self) -> None:
        now = self.clock()
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self.timeout_s:
                raise CircuitOpenError(f"circuit breaker {self.name!r} is open")
            self.state = BreakerState.HALF_OPEN
            self._half_open_in_flight = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._half_open_in_flight >= self.max_requests:
                raise CircuitOpenError(f"circuit breaker {self.name!r} is half-open and busy")
            self._half_open_in_flight += 1
        elif self.interval_s > 0 and now - self._counts_since >= self.interval_s:
            self.consecutive_failures = 0
            self._counts_since = now

    def on_success(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.CLOSED
        self.consecutive_failures = 0

    def on_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive_failures > self.trip_after:
            self.state = BreakerState.OPEN
            self._opened_at = self.clock()


class Policy:
    def __init__(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetrySpec | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.timeout_s = timeout_s
        self.retry = retry
        self.breaker = breaker
        self._sleep = sleep

    @property
    def is_noop(self) -> bool:
        return self.timeout_s is None and self.retry is None and self.breaker is None

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self.is_noop:
            return await fn()
        retries_done = 0
        while True:
            if self.breaker is not None:
                self.breaker.before_call()
            try:
                if self.timeout_s is not None:
                    try:
                        result = await asyncio.wait_for(fn(), self.timeout_s)
                    except TimeoutError:
                        raise PolicyTimeoutError(f"timed out after {self.timeout_s:g}s") from None
                else:
                    result = await fn()
            except Exception as exc:
                permanent = is_permanent(exc)
                if self.breaker is not None and not permanent:
                    self.breaker.on_failure()
                if permanent or self.retry is None or not self.retry.allows(retries_done):
                    raise
                await self._sleep(self.retry.delay(retries_done))
                retries_done += 1
                continue
            if self.breaker is not None:
                self.breaker.on_success()
            return result


NOOP = Policy()
