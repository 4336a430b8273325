"""sequencer.in-memory: process-local counters."""

from __future__ import annotations

from capabilities import registry
from capabilities.blocks.sequencer.contract import Increment
from capabilities.daprspec.component import ComponentSpec


@registry.register("sequencer.in-memory")
class InMemorySequencer:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self._counters: dict[str, int] = {}

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()

    def features(self) -> set[str]:
        return set()

    async def next_id(self, key: str, increment: Increment) -> int:
        value = self._counters.get(key, 0) + 1
        self._counters[key] = value
        return value
