"""Sequencer store contract: next_id(key) returns a strictly increasing positive integer per key."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable


class Increment(StrEnum):
    WEAK = "WEAK"  # increasing, may skip (Layotto: cheaper); our backends give STRONG anyway
    STRONG = "STRONG"  # increasing by exactly one per call


@runtime_checkable
class SequencerStore(Protocol):
    async def init(self) -> None: ...
    async def close(self) -> None: ...
    def features(self) -> set[str]: ...
    async def next_id(self, key: str, increment: Increment) -> int: ...
