"""Backends under test: every test of this folder runs against each. A new backend (PostgreSQL) adds one
factory here and must pass the same suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from pg_store import private_schema, store_url

from xds.controlplane.store import MemoryBackend, MemoryRecord, SqliteBackend, StoreBackend
from xds.controlplane.store.postgres import PostgresBackend


@dataclass
class BackendFactory:
    """open() gives a backend on the same record each time (a restart); all are closed after the test."""

    name: str
    make: Callable[[], StoreBackend]
    opened: list[StoreBackend] = field(default_factory=list)

    def open(self) -> StoreBackend:
        backend = self.make()
        self.opened.append(backend)
        return backend


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql"])
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BackendFactory]:
    if request.param == "postgresql":  # the real server: one schema per test, dropped after
        async with private_schema() as schema:
            url = store_url(schema)
            factory = BackendFactory("postgresql", lambda: PostgresBackend(url))
            yield factory
            for backend in factory.opened:
                await backend.close()
        return
    if request.param == "memory":
        record = MemoryRecord()
        factory = BackendFactory("memory", lambda: MemoryBackend(record))
    else:
        factory = BackendFactory("sqlite", lambda: SqliteBackend.in_state_dir(tmp_path / "state"))
    yield factory
    for backend in factory.opened:
        await backend.close()
