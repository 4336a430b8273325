"""sequencer.redis: INCR per key (atomic, strictly increasing)."""

from __future__ import annotations

from typing import Any

from capabilities import registry
from capabilities.blocks.sequencer.contract import Increment
from capabilities.components.spec import ComponentSpec
from capabilities.config.backends import redis_client


@registry.register("sequencer.redis")
class RedisSequencer:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self._client: Any = None

    async def init(self) -> None:
        self._client = redis_client(self.spec.metadata)
        await self._client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def features(self) -> set[str]:
        return set()

    async def next_id(self, key: str, increment: Increment) -> int:
        return int(await self._client.incr(key))
