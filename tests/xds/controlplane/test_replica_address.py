"""The address a replica's heartbeat row gives the others (real PostgreSQL): a replica bound to every
interface (--host 0.0.0.0, compose and Kubernetes) is listed at an address another replica can dial, the one
PostgreSQL sees it connect from; a bound address is kept as given."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pg_store import PG_BASE, private_schema, store_url

from xds.controlplane.store.postgres import PostgresBackend


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    async with private_schema() as schema:
        store = PostgresBackend(store_url(schema))
        await store.load()
        try:
            yield store
        finally:
            await store.close()


async def seen_from() -> str:
    """This host's address as the test's PostgreSQL sees it."""
    conn = await asyncpg.connect(PG_BASE)
    try:
        return str(await conn.fetchval("SELECT host(inet_client_addr())"))
    finally:
        await conn.close()


@pytest.mark.parametrize("bound", ["0.0.0.0:15012", ":::15012", "[::]:15012"])
async def test_a_wildcard_bind_is_listed_at_the_address_postgres_sees(
    backend: PostgresBackend, bound: str
) -> None:
    await backend.heartbeat("cp-a", bound, 1, [])
    host = await seen_from()
    listed = f"[{host}]:15012" if ":" in host else f"{host}:15012"
    assert [(r["id"], r["address"]) for r in await backend.fleet(60)] == [("cp-a", listed)]


async def test_a_bound_address_is_listed_as_given(backend: PostgresBackend) -> None:
    await backend.heartbeat("cp-a", "192.0.2.7:15012", 1, [])
    assert [(r["id"], r["address"]) for r in await backend.fleet(60)] == [("cp-a", "192.0.2.7:15012")]
