"""SnapshotCache: the current Snapshot per proxy id, and watches that wake stream handlers on change.

State only, no gRPC. set_snapshot() decides synchronously which watches to wake and wakes them (resolving a
future never awaits), so the state is never observed half-updated. Snapshots of proxies with no open stream
are dropped when their last stream detaches, so memory does not grow with proxies that came and went.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from xds.cache.snapshot import Snapshot
from xds.cache.watcher import NewProxyCallback

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Entry:
    snapshot: Snapshot | None = None
    streams: int = 0
    waiters: set[asyncio.Future[Snapshot]] = field(default_factory=set)


class SnapshotCache:
    """Current snapshot per proxy id plus change notification (the server reads it as a ConfigWatcher).

    on_new_proxy is awaited by the server when a stream identifies a proxy whose snapshot is not set yet,
    so the control plane can compute the first snapshot for a newly connected proxy.
    """

    def __init__(self, on_new_proxy: NewProxyCallback | None = None) -> None:
        self.on_new_proxy = on_new_proxy
        self._entries: dict[str, _Entry] = {}

    # ---------------------------------------------------------------- state

    def set_snapshot(self, proxy_id: str, snapshot: Snapshot) -> None:
        """Publish a snapshot; wakes every watch of that proxy (synchronously, no await)."""
        entry = self._entries.get(proxy_id)
        if entry is None:
            entry = self._entries[proxy_id] = _Entry()
        if entry.snapshot is snapshot:
            return
        entry.snapshot = snapshot
        waiters, entry.waiters = entry.waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(snapshot)

    def get(self, proxy_id: str) -> Snapshot | None:
        """The current snapshot of a proxy, or None."""
        entry = self._entries.get(proxy_id)
        return entry.snapshot if entry else None

    def remove(self, proxy_id: str) -> None:
        """Forget a proxy's snapshot (its open watches keep waiting for a new one)."""
        entry = self._entries.get(proxy_id)
        if entry is None:
            return
        entry.snapshot = None
        if entry.streams == 0 and not entry.waiters:
            del self._entries[proxy_id]

    def proxy_ids(self) -> list[str]:
        """Proxy ids that have a snapshot set."""
        return [pid for pid, e in self._entries.items() if e.snapshot is not None]

    def connected_ids(self) -> list[str]:
        """Proxy ids with at least one open stream (what a rebuild should compute snapshots for)."""
        return [pid for pid, e in self._entries.items() if e.streams > 0]

    # ---------------------------------------------------------------- streams and watches

    def attach(self, proxy_id: str) -> None:
        """A stream for this proxy opened."""
        entry = self._entries.get(proxy_id)
        if entry is None:
            entry = self._entries[proxy_id] = _Entry()
        entry.streams += 1

    def detach(self, proxy_id: str) -> None:
        """A stream closed; the snapshot is dropped once the proxy has no stream left."""
        entry = self._entries.get(proxy_id)
        if entry is None:
            return
        entry.streams = max(0, entry.streams - 1)
        if entry.streams == 0:
            for fut in entry.waiters:
                fut.cancel()
            del self._entries[proxy_id]

    def stream_count(self, proxy_id: str) -> int:
        entry = self._entries.get(proxy_id)
        return entry.streams if entry else 0

    def next_snapshot(self, proxy_id: str, current: Snapshot | None) -> asyncio.Future[Snapshot]:
        """A future resolved with the proxy's snapshot once it is not `current` (at once if it differs).

        Cancel the future to release the watch (the stream handler does so when it ends).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Snapshot] = loop.create_future()
        entry = self._entries.get(proxy_id)
        if entry is None:
            entry = self._entries[proxy_id] = _Entry()
        if entry.snapshot is not None and entry.snapshot is not current:
            fut.set_result(entry.snapshot)
            return fut
        entry.waiters.add(fut)
        fut.add_done_callback(entry.waiters.discard)
        return fut

    def watch_count(self) -> int:
        """Open watches over all proxies (tests assert they are released)."""
        return sum(len(e.waiters) for e in self._entries.values())

    async def wait_for(self, proxy_id: str, timeout: float) -> Snapshot | None:  # noqa: ASYNC109
        """Wait up to timeout for a proxy's first snapshot; None on timeout."""
        fut = self.next_snapshot(proxy_id, None)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
