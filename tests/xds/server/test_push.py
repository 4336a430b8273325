"""Debouncer (leading edge, trailing batch, max delay, one fire at a time) and the push throttle."""

from __future__ import annotations

import asyncio

import pytest

from xds.server.push import Debouncer, PushThrottle


class Recorder:
    def __init__(self, hold: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.hold = hold
        self.running = 0
        self.max_running = 0

    async def __call__(self, batch: list[int]) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.batches.append(batch)
        await asyncio.sleep(self.hold)
        self.running -= 1


async def test_isolated_change_fires_at_once_on_the_leading_edge() -> None:
    rec = Recorder()
    deb: Debouncer[int] = Debouncer(rec, after=5.0, max_delay=10.0)
    deb.trigger(1)
    for _ in range(5):
        await asyncio.sleep(0)
    assert rec.batches == [[1]]  # did not wait the 5 s quiet period
    await deb.close()


async def test_burst_is_batched_after_the_leading_fire() -> None:
    rec = Recorder()
    deb: Debouncer[int] = Debouncer(rec, after=0.05, max_delay=5.0)
    deb.trigger(0)
    await asyncio.sleep(0)
    for i in range(1, 6):
        deb.trigger(i)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)
    assert rec.batches == [[0], [1, 2, 3, 4, 5]]
    await deb.close()


async def test_max_delay_bounds_a_continuous_stream() -> None:
    rec = Recorder()
    deb: Debouncer[int] = Debouncer(rec, after=0.05, max_delay=0.15, leading_edge=False)
    for i in range(30):  # an event every 10 ms for 300 ms: never quiet for 50 ms
        deb.trigger(i)
        await asyncio.sleep(0.01)
    await deb.flush()
    assert len(rec.batches) >= 2  # max_delay forced fires while events kept coming
    assert [x for b in rec.batches for x in b] == list(range(30))  # nothing lost, order kept
    await deb.close()


async def test_only_one_fire_runs_at_a_time_and_changes_during_it_are_batched() -> None:
    rec = Recorder(hold=0.05)
    deb: Debouncer[int] = Debouncer(rec, after=0.01, max_delay=1.0)
    deb.trigger(1)
    await asyncio.sleep(0.01)
    deb.trigger(2)
    deb.trigger(3)
    await asyncio.sleep(0.2)
    assert rec.batches == [[1], [2, 3]] and rec.max_running == 1
    await deb.close()


async def test_fire_errors_are_logged_not_fatal() -> None:
    calls: list[list[int]] = []

    async def boom(batch: list[int]) -> None:
        calls.append(batch)
        raise RuntimeError("rebuild failed")

    deb: Debouncer[int] = Debouncer(boom, after=0.01, max_delay=1.0)
    deb.trigger(1)
    await asyncio.sleep(0.05)
    deb.trigger(2)
    await asyncio.sleep(0.05)
    assert calls == [[1], [2]]
    await deb.close()


def test_bad_settings_rejected() -> None:
    with pytest.raises(ValueError, match="after"):
        Debouncer(Recorder(), after=2.0, max_delay=1.0)
    with pytest.raises(ValueError, match="max concurrent pushes"):
        PushThrottle(0)


async def test_throttle_caps_concurrency() -> None:
    throttle = PushThrottle(3)

    async def push() -> None:
        async with throttle.slot():
            await asyncio.sleep(0.01)

    await asyncio.gather(*(push() for _ in range(20)))
    assert throttle.peak == 3 and throttle.active == 0
