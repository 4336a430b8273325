"""Component instances shared by the runtimes of one process (node mode: several apps, one process).

Two apps whose Component resolves to the very same spec (type, version, name, namespace, metadata after
secret resolution and {appID} expansion) use one instance, hence one connection pool to the backend. Only
blocks whose instances hold no per-app state are shared: state (keys carry the app's prefix, added by the
state API, not the store), secret stores, lock and sequencer stores. Pub/sub and bindings keep one instance
per app: their subscriptions, consumer groups and input readers belong to an app.

An instance is created and initialised once (concurrent acquirers wait for the same init), counted per
user, and closed when its last user releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from capabilities.daprspec.component import ComponentSpec

SHARED_BLOCKS = frozenset({"state", "secretstores", "lock", "sequencer"})

Create = Callable[[ComponentSpec], Awaitable[Any]]
Close = Callable[[Any], Awaitable[None]]


def share_key(spec: ComponentSpec) -> Hashable | None:
    """Identity of what a backend connection depends on; None when this block is never shared."""
    if spec.block not in SHARED_BLOCKS:
        return None
    return (spec.type, spec.version, spec.name, spec.namespace, tuple(sorted(spec.metadata.items())))


@dataclass
class _Entry:
    ready: asyncio.Future[Any]
    users: int = 0


class SharedComponents:
    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self._keys: dict[int, Hashable] = {}  # id(instance) -> its entry

    def users(self, instance: Any) -> int:
        key = self._keys.get(id(instance))
        entry = self._entries.get(key) if key is not None else None
        return entry.users if entry is not None else 0

    async def acquire(self, spec: ComponentSpec, create: Create) -> Any:
        """The shared instance for spec (created by `create` for the first user), or a private one."""
        key = share_key(spec)
        if key is None:
            return await create(spec)
        entry = self._entries.get(key)
        if entry is None:
            task = asyncio.ensure_future(create(spec))
            entry = self._entries[key] = _Entry(task)
        entry.users += 1
        try:
            instance = await asyncio.shield(entry.ready)
        except BaseException:
            entry.users -= 1
            if entry.ready.done() and self._entries.get(key) is entry:
                del self._entries[key]  # a failed init is retried by the next acquire
            elif entry.users == 0 and not entry.ready.done():
                entry.ready.cancel()
                with contextlib.suppress(BaseException):
                    await entry.ready
                self._entries.pop(key, None)
            raise
        self._keys[id(instance)] = key
        return instance

    async def release(self, instance: Any, close: Close) -> None:
        """One user less; the last one closes it. An instance this pool does not hold is closed at once."""
        key = self._keys.get(id(instance))
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            await close(instance)
            return
        entry.users -= 1
        if entry.users > 0:
            return
        del self._entries[key]
        del self._keys[id(instance)]
        await close(instance)
