"""lock.redis: SET key owner NX EX <expiry>; unlock compares the owner in a Lua script (atomic)."""

from __future__ import annotations

from typing import Any

from capabilities import registry
from capabilities.blocks.lock.contract import UnlockStatus
from capabilities.components.redis_base import RedisComponent

UNLOCK_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call('DEL', KEYS[1])
return 0
"""


@registry.register("lock.redis")
class RedisLockStore(RedisComponent):
    _unlock: Any = None

    async def init(self) -> None:
        await super().init()
        self._unlock = self._client.register_script(UNLOCK_SCRIPT)

    async def try_lock(self, resource_id: str, owner: str, expiry_s: int) -> bool:
        return bool(await self._client.set(resource_id, owner, nx=True, ex=expiry_s))

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        return UnlockStatus(int(await self._unlock(keys=[resource_id], args=[owner])))
