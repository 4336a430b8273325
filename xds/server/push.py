"""Debounce config changes before rebuilds, and cap concurrent per-proxy pushes (istiod's knobs).

Debouncer: an ISOLATED change (nothing pending, nothing within `after` before it, no rebuild running) fires
at once (leading edge). Changes arriving within `after` of the previous one, or while a rebuild runs, are
batched and fire once quiet for `after`, never later than `max_delay` after the first pending change. Only
one fire runs at a time (istiod's `free` channel). Defaults follow PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DEBOUNCE_AFTER = 0.1
DEFAULT_DEBOUNCE_MAX = 10.0
DEFAULT_MAX_CONCURRENT_PUSHES = 100


class Debouncer(Generic[T]):
    """Batch change events for `fire(batch)`; see the module docstring for the timing rules."""

    def __init__(
        self,
        fire: Callable[[list[T]], Awaitable[None]],
        after: float = DEFAULT_DEBOUNCE_AFTER,
        max_delay: float = DEFAULT_DEBOUNCE_MAX,
        clock: Callable[[], float] = time.monotonic,
        leading_edge: bool = True,
    ) -> None:
        if after < 0 or max_delay < after:
            raise ValueError(f"debounce: need 0 <= after ({after}) <= max_delay ({max_delay})")
        self._fire = fire
        self.after = after
        self.max_delay = max_delay
        self.leading_edge = leading_edge
        self._clock = clock
        self._pending: list[T] = []
        self._first_pending: float | None = None
        self._last_event: float | None = None
        self._fire_now = False
        self._firing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.fired = 0  # number of fire() calls (tests, status)

    def trigger(self, event: T) -> None:
        """Record a change; never blocks."""
        now = self._clock()
        isolated = (
            self.leading_edge
            and not self._pending
            and not self._firing
            and (self._last_event is None or now - self._last_event >= self.after)
        )
        self._pending.append(event)
        self._idle.clear()
        self._last_event = now
        if self._first_pending is None:
            self._first_pending = now
        if isolated:
            self._fire_now = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="debouncer")
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Fire whatever is pending now (e.g. before shutdown)."""
        self._fire_now = True
        self._wake.set()
        await self._idle.wait()

    async def close(self) -> None:
        """Stop the background task; pending events are dropped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                now = self._clock()
                assert self._first_pending is not None and self._last_event is not None
                deadline = min(self._last_event + self.after, self._first_pending + self.max_delay)
                if not self._fire_now and now < deadline:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), deadline - now)
                    self._wake.clear()
                    continue
                batch, self._pending = self._pending, []
                self._first_pending = None
                self._fire_now = False
                self._firing = True
                try:
                    self.fired += 1
                    await self._fire(batch)
                except Exception:
                    log.exception("debounced rebuild failed (%d changes)", len(batch))
                finally:
                    self._firing = False
            self._idle.set()


class PushThrottle:
    """At most `limit` per-proxy pushes at once (PILOT_PUSH_THROTTLE); tracks the peak for tests/status."""

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT_PUSHES) -> None:
        if limit < 1:
            raise ValueError(f"max concurrent pushes must be >= 1, got {limit}")
        self.limit = limit
        self._sem = asyncio.Semaphore(limit)
        self.active = 0
        self.peak = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._sem:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                yield
            finally:
                self.active -= 1
