"""Garbage-collector policy: no full collection in the middle of a push.

At 1,000 services the control plane holds a few million long-lived objects (IR, memo, serialized resources).
CPython's cyclic collector walks all of them on every full (generation 2) collection: 100-300 ms on the
development machine, landing at random inside pushes (one such pause took a one-route change's p99 from
~85 ms to ~290 ms). So after each build the live objects are frozen (`gc.freeze`: skipped by the collector,
still freed by reference counting, which is how almost all of them die), and a full collection of what
accumulated runs only once the control plane has been quiet for a while.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


class QuietCollector:
    def __init__(self, quiet_seconds: float = 30.0) -> None:
        self.quiet_seconds = quiet_seconds
        self._pending: asyncio.TimerHandle | None = None
        self.collections = 0

    def after_build(self) -> None:
        """Freeze what the build left alive; (re)schedule a full collection for the next quiet period."""
        gc.freeze()
        if self._pending is not None:
            self._pending.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a benchmark or a tool): frozen only
        self._pending = loop.call_later(self.quiet_seconds, self.collect_now)

    def collect_now(self) -> None:
        self._pending = None
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
