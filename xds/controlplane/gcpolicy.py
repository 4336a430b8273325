"""Garbage-collector policy: no full collection in the middle of a push.

At 1,000 services the control plane holds a few million long-lived objects (IR, memo, serialized resources).
CPython's cyclic collector walks all of them on every full (generation 2) collection: 100-300 ms on the
development machine, landing at random inside pushes (one such pause took a one-route change's p99 from
~85 ms to ~290 ms). So after each build the live objects are frozen (`gc.freeze`: skipped by the collector,
still freed by reference counting, which is how almost all of them die), and a full collection of what
accumulated runs once the control plane has been quiet for a while.

Two limits keep the freezing from keeping garbage: the young generations are collected before each freeze
(cheap: they hold only what changed since the last collection), so cyclic garbage of the moment (a refused
plan, an exception and its frames) is freed instead of frozen; and when changes never stop for a quiet
period, the full collection still runs `max_delay_seconds` after the first postponed one (without it, a
change every few seconds froze garbage for good: RSS grew without bound).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


class QuietCollector:
    def __init__(self, quiet_seconds: float = 30.0, max_delay_seconds: float = 300.0) -> None:
        self.quiet_seconds = quiet_seconds
        self.max_delay_seconds = max_delay_seconds
        self._pending: asyncio.TimerHandle | None = None
        self._due_by: float | None = None  # loop time the pending collection may not be moved past
        self.collections = 0

    def after_build(self) -> None:
        """Free young garbage, freeze what the build left alive; (re)schedule a full collection for the
        next quiet period, but no later than max_delay_seconds after the first postponed one."""
        gc.collect(1)
        gc.freeze()
        if self._pending is not None:
            self._pending.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a benchmark or a tool): frozen only
        now = loop.time()
        if self._due_by is None:
            self._due_by = now + self.max_delay_seconds
        self._pending = loop.call_at(min(now + self.quiet_seconds, self._due_by), self.collect_now)

    def collect_now(self) -> None:
        self._pending = None
        self._due_by = None
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.collections += 1
        log.debug(
            "quiet-time GC: %d unreachable objects in %.0f ms", found, (time.perf_counter() - started) * 1e3
        )

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._due_by = None
