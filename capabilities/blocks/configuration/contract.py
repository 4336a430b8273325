"""Configuration store contract (components-contrib configuration.Store)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ConfigItem:
    value: str
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "version": self.version, "metadata": dict(self.metadata)}


UpdateHandler = Callable[[dict[str, ConfigItem]], Awaitable[None]]
Unsubscribe = Callable[[], Awaitable[None]]


@runtime_checkable
class ConfigurationStore(Protocol):
    async def init(self) -> None: ...
    async def close(self) -> None: ...
    def features(self) -> set[str]: ...

    async def get(self, keys: list[str], metadata: dict[str, str]) -> dict[str, ConfigItem]:
        """Items for `keys` (all items when empty); missing keys are simply absent."""
        ...

    async def subscribe(
        self, keys: list[str], metadata: dict[str, str], handler: UpdateHandler
    ) -> Unsubscribe:
        """Call `handler` with changed items (a deleted key has an empty value) until unsubscribed."""
        ...
