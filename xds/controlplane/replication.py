"""Keeping a replica at the head of a shared store (PostgreSQL): LISTEN for each commit, and re-read the head
every few seconds so that a half-open LISTEN connection (or PostgreSQL restarting) cannot leave it behind.

The replica only ever moves forward (ConfigStore.refresh loads a newer head, never an older one), so a proxy
never receives an older config than one it already had. While PostgreSQL is down the replica keeps serving
its last config and reconnects on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from xds.controlplane.store import StoreError

log = logging.getLogger("mecha.replication")

CatchUp = Callable[[], Awaitable[bool]]
Report = Callable[[], tuple[str, str, int, list[dict[str, Any]]]]  # (replica id, address, version, streams)
FLEET_AGE_INTERVALS = 3  # a replica silent for this many intervals is gone from the fleet view


class Replication:
    def __init__(
        self,
        backend: Any,
        catch_up: CatchUp,
        poll_interval: float = 2.0,
        report: Report | None = None,
        revocations: Any = None,
        on_revoked: Callable[[], object] | None = None,
    ) -> None:
        """backend: a PostgresBackend (connect(), channel); catch_up: the control plane's reload; report: this
        replica's heartbeat (its xDS streams), written each interval so any replica answers for the fleet."""
        self.backend = backend
        self._catch_up = catch_up
        self._report = report
        # workload-credential revocations (xds/identity RevocationList: snapshot/merge) shared by every
        # replica; on_revoked closes this replica's streams of a credential revoked elsewhere
        self.revocations = revocations
        self._on_revoked = on_revoked
        self.others: list[dict[str, Any]] = []  # the other live replicas' heartbeat rows
        self.replica_id = ""
        self.poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._conn: Any = None
        self.store_reachable = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-replication")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drop_listener()
        if self.replica_id:  # leave the fleet view at once rather than after FLEET_AGE_INTERVALS
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.backend.leave(self.replica_id), self.poll_interval)

    async def _share_revocations(self) -> None:
        if self.revocations is None:
            return
        ids, proxies = await self.backend.share_revocations(*self.revocations.snapshot())
        if self.revocations.merge(ids, proxies) and self._on_revoked is not None:
            self._on_revoked()

    async def _heartbeat(self) -> None:
        if self._report is None:
            return
        replica, address, version, streams = self._report()
        self.replica_id = replica
        await self.backend.heartbeat(replica, address, version, streams)
        rows = await self.backend.fleet(self.poll_interval * FLEET_AGE_INTERVALS)
        self.others = [r for r in rows if r["id"] != replica]

    async def wake(self) -> None:
        """Run a round now (tests, and callers that know the store moved) and let it happen."""
        self._wake.set()
        await asyncio.sleep(0.05)

    def _notified(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def _drop_listener(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # the server may be gone
                conn.terminate()

    async def _listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        await self._drop_listener()
        conn = await self.backend.connect()
        await conn.add_listener(self.backend.channel, self._notified)
        conn.add_termination_listener(lambda _c: self._wake.set())  # lost: reconnect now, not at the poll
        self._conn = conn

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
                # a commit between the last read and LISTEN is caught here
                await self._catch_up()
                await self._heartbeat()
                await self._share_revocations()
                if not self.store_reachable:
                    log.info("config store %s reachable again", self.backend.location)
                self.store_reachable = True
            except (StoreError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if self.store_reachable:
                    log.error("config store unreachable, serving the last config: %s", exc)
                self.store_reachable = False
                self.others = []  # unknown while the store is down: this replica answers for itself
                await self._drop_listener()
            except Exception:  # never let the replica stop following the store
                log.exception("catching up with the config store failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
