"""sequencer.redis: INCR per key (atomic, strictly increasing)."""

from __future__ import annotations

from capabilities import registry
from capabilities.blocks.sequencer.contract import Increment
from capabilities.components.redis_base import RedisComponent


@registry.register("sequencer.redis")
class RedisSequencer(RedisComponent):
    async def next_id(self, key: str, increment: Increment) -> int:
        return int(await self._client.incr(key))
