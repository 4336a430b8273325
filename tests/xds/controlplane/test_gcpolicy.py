"""The quiet-time collector: frozen after a build, a full collection only after a quiet period, and neither
freezing garbage nor postponing the collection for ever."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from xds.controlplane.gcpolicy import QuietCollector


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.asyncio
async def test_builds_freeze_and_only_a_quiet_period_collects() -> None:
    collector = QuietCollector(quiet_seconds=0.2)
    try:
        alive = _Cycle()  # alive during the build: frozen with it
        collector.after_build()
        garbage = weakref.ref(alive)
        del alive  # dies after the build: only the cyclic collector can free it
        gc.collect()  # an ordinary full pass skips what the build froze
        assert garbage() is not None
        for _ in range(3):  # changes keep coming: the collection keeps moving out
            await asyncio.sleep(0.1)
            collector.after_build()
        assert collector.collections == 0
        await asyncio.sleep(0.35)
        assert collector.collections == 1
        assert garbage() is None
    finally:
        collector.close()
        gc.unfreeze()


def test_garbage_present_at_a_build_is_freed_not_frozen() -> None:
    """Cyclic garbage of the moment (a refused plan, an exception and its frames) must not be frozen: under a
    steady trickle of changes the quiet-time collection is rare, and frozen garbage piled up."""
    collector = QuietCollector()
    gc.disable()  # the automatic collector must not free it first: the build's own policy has to
    try:
        garbage = weakref.ref(_Cycle())
        collector.after_build()
        gc.collect()
        assert garbage() is None
    finally:
        gc.enable()
        collector.close()
        gc.unfreeze()


@pytest.mark.asyncio
async def test_changes_that_never_stop_still_get_a_full_collection() -> None:
    collector = QuietCollector(quiet_seconds=1.0, max_delay_seconds=0.3)
    try:
        for _ in range(20):  # a change every 50 ms for 1 s: never quiet for 1 s
            collector.after_build()
            await asyncio.sleep(0.05)
        assert collector.collections >= 1
    finally:
        collector.close()
        gc.unfreeze()
