"""lock.in-memory: process-local locks with expiry."""

from __future__ import annotations

import time

from capabilities import registry
from capabilities.blocks.lock.contract import UnlockStatus
from capabilities.daprspec.component import ComponentSpec


@registry.register("lock.in-memory")
class InMemoryLockStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self._locks: dict[str, tuple[str, float]] = {}  # resource -> (owner, expires_at)

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._locks.clear()

    def features(self) -> set[str]:
        return set()

    def _holder(self, resource_id: str) -> str | None:
        entry = self._locks.get(resource_id)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._locks[resource_id]
            return None
        return entry[0]

    async def try_lock(self, resource_id: str, owner: str, expiry_s: int) -> bool:
        if self._holder(resource_id) is not None:
            return False
        self._locks[resource_id] = (owner, time.monotonic() + expiry_s)
        return True

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        holder = self._holder(resource_id)
        if holder is None:
            return UnlockStatus.LOCK_DOES_NOT_EXIST
        if holder != owner:
            return UnlockStatus.LOCK_BELONGS_TO_OTHERS
        del self._locks[resource_id]
        return UnlockStatus.SUCCESS
