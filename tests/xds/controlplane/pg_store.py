"""The real PostgreSQL for store tests: each test gets its own schema in database `test`, dropped after."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

PG_HOST = os.environ.get("MECHA_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MECHA_TEST_PG_PORT", "5432"))
PG_BASE = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def postgres_available() -> None:
    """Skip (fail under CI=true) when the server does not answer; the reason names it."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return
    except OSError:
        message = f"PostgreSQL is not answering on {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


def store_url(schema: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **params}.items())
    return f"{PG_BASE}?{query}"


@asynccontextmanager
async def private_schema() -> AsyncIterator[str]:
    """A fresh schema name; the schema is dropped afterwards (whatever the test created in it)."""
    postgres_available()
    schema = "t_" + uuid.uuid4().hex[:16]
    try:
        yield schema
    finally:
        conn = await asyncpg.connect(PG_BASE)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
