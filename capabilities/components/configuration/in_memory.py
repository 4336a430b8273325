"""configuration.in-memory: an embedded configuration store for demos and tests (not a Dapr type).

Initial items come from metadata `items`, a JSON object {key: "value" | {"value", "version", "metadata"}}.
`set()`/`delete()` change items and notify subscribers, like a write to Redis would.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from capabilities import registry
from capabilities.blocks.configuration.contract import ConfigItem, Unsubscribe, UpdateHandler
from capabilities.daprspec.component import ComponentSpec


@registry.register("configuration.in-memory")
class InMemoryConfigurationStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self._items: dict[str, ConfigItem] = {}
        self._subscribers: dict[int, tuple[frozenset[str], UpdateHandler]] = {}
        self._ids = itertools.count(1)
        self._versions = itertools.count(1)

    async def init(self) -> None:
        raw = self.spec.metadata.get("items", "")
        if not raw:
            return
        try:
            document: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"metadata items: invalid JSON: {exc.msg}") from None
        if not isinstance(document, dict):
            raise ValueError("metadata items: expected a JSON object {key: value}")
        for key, entry in document.items():
            if isinstance(entry, dict):
                meta = {str(k): str(v) for k, v in (entry.get("metadata") or {}).items()}
                self._items[key] = ConfigItem(
                    str(entry.get("value", "")), str(entry.get("version", "1")), meta
                )
            else:
                self._items[key] = ConfigItem(str(entry), "1")

    async def close(self) -> None:
        self._subscribers.clear()

    def features(self) -> set[str]:
        return set()

    async def get(self, keys: list[str], metadata: dict[str, str]) -> dict[str, ConfigItem]:
        if not keys:
            return dict(self._items)
        return {k: self._items[k] for k in keys if k in self._items}

    async def subscribe(
        self, keys: list[str], metadata: dict[str, str], handler: UpdateHandler
    ) -> Unsubscribe:
        sub_id = next(self._ids)
        self._subscribers[sub_id] = (frozenset(keys), handler)

        async def unsubscribe() -> None:
            self._subscribers.pop(sub_id, None)

        return unsubscribe

    async def set(
        self, key: str, value: str, version: str | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        item = ConfigItem(value, version or str(next(self._versions) + 1), dict(metadata or {}))
        self._items[key] = item
        await self._notify({key: item})

    async def delete(self, key: str) -> None:
        if self._items.pop(key, None) is not None:
            await self._notify({key: ConfigItem("", "")})

    async def _notify(self, items: dict[str, ConfigItem]) -> None:
        for keys, handler in list(self._subscribers.values()):
            wanted = {k: v for k, v in items.items() if not keys or k in keys}
            if wanted:
                await handler(wanted)
