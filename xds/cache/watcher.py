"""What the xDS server needs of a snapshot cache (go-control-plane's cache.ConfigWatcher, in Python).

XdsServer is typed against this Protocol, not SnapshotCache: the server only reads snapshots, follows a
proxy's next one and counts its streams; anything that answers these calls can feed it (tests, benchmarks,
another cache). Imports nothing heavy: the agent loads xds.cache.snapshot on a sidecar's start path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from xds.cache.snapshot import Snapshot
    from xds.proxy import ProxyIdentity

# Awaited by the server when a stream identifies a proxy that has no snapshot yet.
NewProxyCallback = Callable[["ProxyIdentity"], Awaitable[None]]


class ConfigWatcher(Protocol):
    """The snapshot cache as XdsServer sees it (xds/server/server.py is its only caller)."""

    @property
    def on_new_proxy(self) -> NewProxyCallback | None:
        """Computes a first snapshot for a proxy that has none (None: the server just waits)."""
        ...

    def get(self, proxy_id: str) -> Snapshot | None:
        """The proxy's current snapshot, or None."""
        ...

    def next_snapshot(self, proxy_id: str, current: Snapshot | None) -> asyncio.Future[Snapshot]:
        """Resolved with the proxy's snapshot once it is not `current`; cancelling it releases the watch."""
        ...

    def attach(self, proxy_id: str) -> None:
        """A stream of this proxy opened."""
        ...

    def detach(self, proxy_id: str) -> None:
        """A stream of this proxy closed (the last one: its snapshot may be dropped)."""
        ...

    def stream_count(self, proxy_id: str) -> int:
        """Open streams of this proxy."""
        ...

    def remove(self, proxy_id: str) -> None:
        """Forget the proxy's snapshot (a first snapshot computed after its last stream closed)."""
        ...
