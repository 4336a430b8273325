"""Lock store contract (components-contrib lock.Store)."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol, runtime_checkable


class UnlockStatus(IntEnum):
    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


@runtime_checkable
class LockStore(Protocol):
    async def init(self) -> None: ...
    async def close(self) -> None: ...
    def features(self) -> set[str]: ...

    async def try_lock(self, resource_id: str, owner: str, expiry_s: int) -> bool:
        """True if acquired; False if another owner holds it (a held, unexpired lock is never stolen)."""
        ...

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus: ...
