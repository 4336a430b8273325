"""Periodic jobs that must run on exactly one replica at a time (history compaction, and whatever else needs
one writer), chosen with a PostgreSQL session advisory lock.

The leader holds the lock on a connection of its own, pinged every interval. The connection is opened with
idle_session_timeout of a few intervals: a replica that stops talking (SIGSTOP, a network cut) loses its
session, hence the lock, and another replica takes the jobs over within that time. A replica whose connection
fails stops being the leader at once. The embedded SQLite store has one process: it is always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("mecha.jobs")

LEASE_INTERVALS = 3  # a silent leader's session ends after this many intervals


class Election(Protocol):
    async def check(self) -> bool: ...
    async def close(self) -> None: ...


class AlwaysLeader:
    """One process on an embedded store: nobody to compete with."""

    async def check(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class AdvisoryLockElection:
    def __init__(self, backend: Any, interval: float, purpose: str = "jobs") -> None:
        self.backend = backend  # PostgresBackend
        self.key = backend.lock_key(purpose)
        self.interval = interval
        self._conn: Any = None
        self.leader = False

    async def check(self) -> bool:
        """Still (or newly) the leader? Never raises: an unreachable store means not the leader."""
        try:
            if self._conn is None or self._conn.is_closed():
                self.leader = False
                timeout_ms = str(int(self.interval * LEASE_INTERVALS * 1000))
                self._conn = await self.backend.connect(idle_session_timeout=timeout_ms)
            if self.leader:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self.interval)  # keeps the session
            else:
                got = await asyncio.wait_for(
                    self._conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.key), self.interval
                )
                if got:
                    log.info("this replica now runs the periodic jobs (%s)", self.key)
                self.leader = bool(got)
        except Exception as exc:  # the session is gone: so is the lock
            if self.leader:
                log.warning("lost the periodic-jobs lock: %s", exc)
            self.leader = False
            await self._drop()
        return self.leader

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        self.leader = False
        await self._drop()


JobFn = Callable[[], Awaitable[None]]


@dataclass
class Job:
    name: str
    run: JobFn
    every: float
    last: float = 0.0
    runs: int = 0


@dataclass
class PeriodicJobs:
    election: Election
    interval: float = 5.0
    jobs: list[Job] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def add(self, name: str, run: JobFn, every: float) -> None:
        self.jobs.append(Job(name, run, every))

    @property
    def leader(self) -> bool:
        return bool(getattr(self.election, "leader", True))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="periodic-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.election.close()

    async def tick(self) -> None:
        """One round: run the jobs that are due, when this replica is the leader."""
        if not await self.election.check():
            return
        now = time.monotonic()
        for job in self.jobs:
            if job.last and now - job.last < job.every:
                continue
            job.last = now
            try:
                await job.run()
                job.runs += 1
            except Exception:
                log.exception("periodic job %s failed", job.name)

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)
