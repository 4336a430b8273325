"""What every Redis-backed component shares: one redis-py client from the component's metadata."""

from __future__ import annotations

from typing import Any

from capabilities.config.backends import redis_client
from capabilities.daprspec.component import ComponentSpec


class RedisComponent:
    """init() builds the client and checks it with PING (a down server fails the component's load with the
    connection error); close() releases it. Subclasses add their scripts and operations."""

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
