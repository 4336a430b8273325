"""SnapshotCache: set/get/remove, watches woken without polling, cleanup after the last stream."""

from __future__ import annotations

import asyncio

from xds.cache import SnapshotCache
from xds.testing.scripted import C, snap


async def test_set_get_remove() -> None:
    cache = SnapshotCache()
    s = snap({C: {"a": "1"}})
    assert cache.get("p") is None
    cache.set_snapshot("p", s)
    assert cache.get("p") is s and cache.proxy_ids() == ["p"]
    cache.remove("p")
    assert cache.get("p") is None and cache.proxy_ids() == []


async def test_watch_wakes_on_new_snapshot_only() -> None:
    cache = SnapshotCache()
    s1, s2 = snap({C: {"a": "1"}}), snap({C: {"a": "2"}})
    cache.set_snapshot("p", s1)
    fut = cache.next_snapshot("p", s1)
    await asyncio.sleep(0)
    assert not fut.done()
    cache.set_snapshot("p", s1)  # same object: no wake-up
    assert not fut.done()
    cache.set_snapshot("other", s2)
    assert not fut.done()
    cache.set_snapshot("p", s2)
    assert fut.done() and fut.result() is s2
    assert cache.watch_count() == 0


async def test_watch_resolves_at_once_when_already_newer() -> None:
    cache = SnapshotCache()
    s1 = snap({C: {"a": "1"}})
    cache.set_snapshot("p", s1)
    fut = cache.next_snapshot("p", None)
    assert fut.done() and fut.result() is s1


async def test_cancelled_watch_is_released() -> None:
    cache = SnapshotCache()
    fut = cache.next_snapshot("p", None)
    assert cache.watch_count() == 1
    fut.cancel()
    await asyncio.sleep(0)
    assert cache.watch_count() == 0


async def test_snapshot_dropped_after_last_stream_detaches() -> None:
    cache = SnapshotCache()
    cache.attach("p")
    cache.attach("p")
    cache.set_snapshot("p", snap({C: {"a": "1"}}))
    assert cache.connected_ids() == ["p"]
    cache.detach("p")
    assert cache.get("p") is not None
    cache.detach("p")
    assert cache.get("p") is None and cache.connected_ids() == [] and cache.watch_count() == 0


async def test_wait_for_times_out_with_none() -> None:
    cache = SnapshotCache()
    assert await cache.wait_for("p", 0.01) is None
    assert cache.watch_count() == 0
