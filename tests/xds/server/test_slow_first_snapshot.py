"""A first snapshot that takes longer than first_snapshot_timeout still reaches its proxy (a fleet
reconnecting at once to a busy control plane): it was cancelled at the timeout, the stream left waiting."""

from __future__ import annotations

import asyncio
import logging

import pytest

from xds import types
from xds.cache import Snapshot, SnapshotCache
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.fake_proxy import FakeProxy
from xds.testing.resources import mesh_resources


async def test_a_slow_first_snapshot_is_reported_and_still_served(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xds.server.server")
    cache = SnapshotCache()
    snap = Snapshot.build(mesh_resources(2))

    async def slow_build(identity: ProxyIdentity) -> None:
        await asyncio.sleep(0.3)  # past the server's 0.1 s: a busy control plane
        cache.set_snapshot(identity.id, snap)

    cache.on_new_proxy = slow_build
    server = XdsServer(cache, first_snapshot_timeout=0.1)
    port = await server.start("127.0.0.1:0")
    proxy = FakeProxy(f"127.0.0.1:{port}", "slow-1", delta=True)
    await proxy.start()
    try:
        await proxy.wait_acked(types.CLUSTER, snap.version(types.CLUSTER), timeout=5)
        assert cache.get("slow-1") is snap
        assert "on_new_proxy(slow-1) took over 0.1s" in caplog.text
    finally:
        await proxy.stop()
        await server.stop(0)
