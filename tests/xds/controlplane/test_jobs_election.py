"""The periodic-jobs election against the real PostgreSQL: its session is used by one operation at a time,
and it stays alive while the leader runs a job longer than the lease (issue #13, replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pg_store import PG_BASE, private_schema, store_url

from xds.controlplane.jobs import LEASE_INTERVALS, AdvisoryLockElection, PeriodicJobs
from xds.controlplane.store.postgres import PostgresBackend

INTERVAL = 0.2  # the lease is LEASE_INTERVALS of these: a slow job outlives it quickly


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    async with private_schema() as schema:
        store = PostgresBackend(store_url(schema))
        await store.load()
        try:
            yield store
        finally:
            await store.close()


async def session_alive(pid: int) -> bool:
    conn = await asyncpg.connect(PG_BASE)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await conn.close()


async def test_checks_at_once_share_the_session_and_keep_the_lock(backend: PostgresBackend) -> None:
    """Two checks of the leader at the same moment (the loop's and the lease keeper's): each waits for the
    session instead of failing with asyncpg's 'another operation is in progress' and dropping the lock."""
    leader, other = AdvisoryLockElection(backend, 1.0), AdvisoryLockElection(backend, 1.0)
    try:
        assert await leader.check() is True
        pid = leader._conn.get_server_pid()
        outcomes = await asyncio.gather(*(leader.check() for _ in range(4)))
        assert outcomes == [True] * 4
        assert leader._conn is not None and leader._conn.get_server_pid() == pid  # the same session
        assert await other.check() is False  # the lock never left it
    finally:
        await leader.close()
        await other.close()


async def test_a_job_longer_than_the_lease_keeps_the_lock(backend: PostgresBackend) -> None:
    """While the leader runs a job, its session is still pinged: PostgreSQL's idle_session_timeout (the lease)
    does not end it, so no other replica starts the jobs while this one is still running them."""
    election, other = AdvisoryLockElection(backend, INTERVAL), AdvisoryLockElection(backend, INTERVAL)
    jobs = PeriodicJobs(election, interval=INTERVAL)
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow_job() -> None:
        started.set()
        await finish.wait()

    jobs.add("slow", slow_job, every=3600.0)
    tick = asyncio.create_task(jobs.tick())
    try:
        await asyncio.wait_for(started.wait(), 10)
        pid = election._conn.get_server_pid()
        await asyncio.sleep(INTERVAL * LEASE_INTERVALS * 3)  # three leases: an idle session had ended
        assert await session_alive(pid), "the leader's session ended while its job ran"
        assert await other.check() is False  # nobody else took the jobs
        assert jobs.leader
        finish.set()
        await asyncio.wait_for(tick, 10)
        assert jobs.jobs[0].runs == 1
    finally:
        finish.set()
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)
        await jobs.stop()
        await other.close()


async def test_a_lost_session_during_a_job_ends_the_leadership_within_an_interval(
    backend: PostgresBackend,
) -> None:
    """The session ends (pg_terminate_backend: a network cut) while a job runs: the leader knows it at the
    next ping, runs no further job of that round, and the other replica takes the lock."""
    election, other = AdvisoryLockElection(backend, INTERVAL), AdvisoryLockElection(backend, INTERVAL)
    jobs = PeriodicJobs(election, interval=INTERVAL)
    started, finish = asyncio.Event(), asyncio.Event()
    later_runs: list[int] = []

    async def slow_job() -> None:
        started.set()
        await finish.wait()

    async def later_job() -> None:
        later_runs.append(1)

    jobs.add("slow", slow_job, every=3600.0)
    jobs.add("later", later_job, every=3600.0)
    tick = asyncio.create_task(jobs.tick())
    try:
        await asyncio.wait_for(started.wait(), 10)
        pid = election._conn.get_server_pid()
        conn = await asyncpg.connect(PG_BASE)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        for _ in range(100):
            if not jobs.leader:
                break
            await asyncio.sleep(INTERVAL / 4)
        assert not jobs.leader, "the leader did not notice its lost session"
        assert await other.check() is True
        finish.set()
        await asyncio.wait_for(tick, 10)
        assert later_runs == []  # not run after the lock was lost
    finally:
        finish.set()
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)
        await jobs.stop()
        await other.close()
