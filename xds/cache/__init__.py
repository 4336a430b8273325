"""Snapshot cache: state only. The server (protocol) reads it through a small interface.

Names load lazily: the agent builds its one-proxy SDS snapshot (xds.cache.snapshot) without the cache."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.cache.cache import SnapshotCache
    from xds.cache.snapshot import Resource, Snapshot
    from xds.cache.watcher import ConfigWatcher, NewProxyCallback

_WHERE = {
    "ConfigWatcher": "xds.cache.watcher",
    "NewProxyCallback": "xds.cache.watcher",
    "SnapshotCache": "xds.cache.cache",
    "Resource": "xds.cache.snapshot",
    "Snapshot": "xds.cache.snapshot",
}
__all__ = ["ConfigWatcher", "NewProxyCallback", "Resource", "Snapshot", "SnapshotCache"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'xds.cache' has no attribute {name!r}")
