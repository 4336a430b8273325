"""Clients that go away mid-call: no lock and no subscription is left behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, lock_pb2, pubsub_pb2
from grpc_harness import Sidecar, start_sidecar, write_resources

from capabilities import registry
from capabilities.blocks.lock.contract import UnlockStatus
from capabilities.daprspec.component import ComponentSpec

SLOW_LOCK = """
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: slowlock}
spec: {type: lock.slow-for-tests, version: v1}
"""


@registry.register("lock.slow-for-tests")
class SlowLock:
    """A lock store that takes 300 ms to acquire: long enough for the client's deadline to pass."""

    def __init__(self, spec: ComponentSpec) -> None:
        self.owners: dict[str, str] = {}

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def features(self) -> set[str]:
        return set()

    async def try_lock(self, resource_id: str, owner: str, expiry_s: int) -> bool:
        await asyncio.sleep(0.3)
        if resource_id in self.owners:
            return False
        self.owners[resource_id] = owner
        return True

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        if resource_id not in self.owners:
            return UnlockStatus.LOCK_DOES_NOT_EXIST
        if self.owners[resource_id] != owner:
            return UnlockStatus.LOCK_BELONGS_TO_OTHERS
        del self.owners[resource_id]
        return UnlockStatus.SUCCESS


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    resources: Path = write_resources(tmp_path_factory.mktemp("slow") / "resources", SLOW_LOCK)
    sc, stop = start_sidecar(resources, app_id="slow")
    try:
        yield sc
    finally:
        stop()
        registry._FACTORIES.pop(("lock.slow-for-tests", "v1"), None)  # leave the registry as found


def test_cancelled_trylock_releases_the_lock(slow: Sidecar) -> None:
    store = slow.runtime.components("lock")["slowlock"]
    with grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        req = lock_pb2.TryLockRequest(
            store_name="slowlock", resource_id="r1", lock_owner="gone", expiry_in_seconds=60
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.TryLockAlpha1(req, timeout=0.05)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 5
        while slow.grpc.api.released_after_cancel < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.grpc.api.released_after_cancel == 1
        assert store.owners == {}
        # Someone else can take it at once, instead of waiting 60 s for the expiry.
        other = lock_pb2.TryLockRequest(
            store_name="slowlock", resource_id="r1", lock_owner="next", expiry_in_seconds=5
        )
        assert stub.TryLockAlpha1(other).success


def test_malformed_message_inside_a_stream(slow: Sidecar) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}") as channel:
        raw = channel.stream_stream(
            "/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1",
            response_deserializer=pubsub_pb2.SubscribeTopicEventsResponseAlpha1.FromString,
        )
        call = raw(iter([b"\xff\xff\xff"]))
        with pytest.raises(grpc.RpcError) as err:
            next(call)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "unmarshalling" in err.value.details()
    assert slow.grpc.api.active_streams == {}


def test_shutdown_requests_a_graceful_stop(slow: Sidecar) -> None:
    from dapr.proto.runtime.v1 import dapr_pb2

    assert not slow.runtime.shutdown_requested.is_set()
    with grpc.insecure_channel(f"127.0.0.1:{slow.grpc_port}") as channel:
        dapr_pb2_grpc.DaprStub(channel).Shutdown(dapr_pb2.ShutdownRequest())
    deadline = time.monotonic() + 5
    while not slow.runtime.shutdown_requested.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow.runtime.shutdown_requested.is_set()
