"""Periodic jobs that must run on exactly one replica at a time (history compaction, and whatever else needs
one writer), chosen with a PostgreSQL session advisory lock.

The leader holds the lock on a connection of its own, pinged every interval, also while a job runs (a job
longer than the lease must not let the session idle out and hand the jobs to a second replica while this one
still runs them). The connection is opened with idle_session_timeout of a few intervals: a replica that stops
talking (SIGSTOP, a network cut) loses its session, hence the lock, and another replica takes the jobs over
within that time. A replica whose connection fails stops being the leader at once. The connection serves one
operation at a time (asyncpg refuses a second with "another operation is in progress"): every use holds the
election's lock. The embedded SQLite store has one process: it is always the leader.
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
    async def check(self, acquire: bool = True) -> bool: ...
    async def close(self) -> None: ...


class AlwaysLeader:
    """One process on an embedded store: nobody to compete with."""

    async def check(self, acquire: bool = True) -> bool:
        return True

    async def close(self) -> None:
        return None


class AdvisoryLockElection:
    def __init__(self, backend: Any, interval: float, purpose: str = "jobs") -> None:
        self.backend = backend  # PostgresBackend
        self.key = backend.lock_key(purpose)
        self.interval = interval
        self._conn: Any = None
        self._in_use = asyncio.Lock()  # one operation at a time on _conn: checks wait for each other
        self._closed = False
        self.leader = False

    async def check(self, acquire: bool = True) -> bool:
        """Still (or newly) the leader? Never raises: an unreachable store means not the leader. acquire
        False: only keep a lock already held (no new session, no new attempt). Callers at the same moment
        (the jobs loop, the lease keeper of a running job) take turns on the session."""
        async with self._in_use:
            if self._closed:
                return False
            return await self._check(acquire)

    async def _check(self, acquire: bool) -> bool:
        try:
            if self._conn is not None and self._conn.is_closed():
                raise ConnectionError("its database session ended")
            if self._conn is None:
                if not acquire:
                    return False
                timeout_ms = str(int(self.interval * LEASE_INTERVALS * 1000))
                self._conn = await self.backend.connect(idle_session_timeout=timeout_ms)
            if self.leader:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self.interval)  # keeps the session
            elif acquire:
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
        self._closed = True
        self.leader = False
        async with self._in_use:  # after a check still connecting: its connection is dropped too
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
        """One round: run the jobs that are due, when this replica is the leader. The session is pinged every
        interval while they run; once the lock is lost, the round's remaining jobs are left to the new
        leader."""
        if not await self.election.check():
            return
        now = time.monotonic()
        due = [job for job in self.jobs if not job.last or now - job.last >= job.every]
        if not due:
            return
        finished = asyncio.Event()
        lease = asyncio.create_task(self._keep_lease(finished), name="periodic-jobs-lease")
        try:
            for job in due:
                if not self.leader:
                    log.warning("periodic jobs: lock lost, %s and the rest left to the new leader", job.name)
                    break
                job.last = now
                try:
                    await job.run()
                    job.runs += 1
                except Exception:
                    log.exception("periodic job %s failed", job.name)
        except asyncio.CancelledError:  # stopping (or frozen, in tests): no more pings either
            lease.cancel()
            raise
        finally:
            finished.set()
            await asyncio.gather(lease, return_exceptions=True)  # ends after its check, never mid-query

    async def _keep_lease(self, finished: asyncio.Event) -> None:
        """Ping the election every interval until `finished` (a job running longer than the lease), or until
        the lock is lost: competing for it again is the next round's check, not this round's."""
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.interval)
                return
            if not await self.election.check(acquire=False):
                return

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)
