"""The quiet-time collector: frozen after a build, a full collection only after a quiet period."""

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
        garbage = weakref.ref(_Cycle())  # only the cyclic collector can free it
        collector.after_build()
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
