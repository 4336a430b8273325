"""state.sqlite: a file-backed store (metadata connectionString = file path), ETags, TTL, transactions, query.

sqlite3 is blocking, so every call runs on one dedicated thread: calls are serialised, which also makes
check-then-write sequences atomic. ETags come from a store-wide counter, so they are never reused.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from capabilities import registry
from capabilities.blocks.state.contract import (
    DeleteRequest,
    Feature,
    Operation,
    Query,
    QueryResult,
    SetRequest,
    StoredItem,
    check_version,
)
from capabilities.blocks.state.query import run_query
from capabilities.config.backends import sql_identifier
from capabilities.daprspec.component import ComponentSpec

T = TypeVar("T")


@registry.register("state.sqlite")
class SqliteStateStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.path = spec.metadata.get("connectionString", "")
        self.table = spec.metadata.get("tableName", "state")
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{spec.name}")

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise RuntimeError(f"state store {self.spec.name}: not initialised")
        db = self._db
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db)

    async def init(self) -> None:
        if not self.path:
            raise ValueError("metadata connectionString is required (a file path, or ':memory:')")
        table = sql_identifier(self.table, "tableName")

        def open_db() -> sqlite3.Connection:
            uri = self.path.startswith("file:")
            db = sqlite3.connect(
                self.path, uri=uri, isolation_level=None, check_same_thread=False, timeout=5.0
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                "etag INTEGER NOT NULL, expires REAL)"
            )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {table}_etag "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER)"
            )
            db.execute(f"INSERT OR IGNORE INTO {table}_etag (id, last) VALUES (1, 0)")
            return db

        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._executor, open_db)
        except sqlite3.Error as exc:
            raise ValueError(f"connectionString {self.path!r}: {exc}") from None

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=False)

    def features(self) -> set[str]:
        return {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API}

    # ---- synchronous helpers, run on the store's thread ----------------------------------------------------
    def _current(self, db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute(
            f"SELECT etag FROM {self.table} WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (key, time.time()),
        ).fetchone()
        return None if row is None else int(row[0])

    def _apply(self, db: sqlite3.Connection, op: Operation) -> None:
        current = self._current(db, op.key)
        check_version(op.key, current, op.etag, isinstance(op, SetRequest) and op.first_write)
        if isinstance(op, DeleteRequest):
            db.execute(f"DELETE FROM {self.table} WHERE key = ?", (op.key,))
            return
        etag = db.execute(
            f"UPDATE {self.table}_etag SET last = last + 1 WHERE id = 1 RETURNING last"
        ).fetchone()[0]
        expires = time.time() + op.ttl_seconds if op.ttl_seconds is not None and op.ttl_seconds >= 0 else None
        db.execute(
            f"INSERT INTO {self.table} (key, value, etag, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, etag = excluded.etag, "
            "expires = excluded.expires",
            (op.key, op.value, etag, expires),
        )

    def _transaction(self, db: sqlite3.Connection, operations: list[Operation]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in operations:
                self._apply(db, op)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- contract ----------------------------------------------------------------------------------------
    async def get(self, key: str) -> StoredItem | None:
        def read(db: sqlite3.Connection) -> StoredItem | None:
            row = db.execute(
                f"SELECT value, etag FROM {self.table} WHERE key = ? AND (expires IS NULL OR expires > ?)",
                (key, time.time()),
            ).fetchone()
            return None if row is None else StoredItem(bytes(row[0]), str(row[1]))

        return await self._call(read)

    async def set(self, req: SetRequest) -> None:
        await self._call(lambda db: self._transaction(db, [req]))

    async def delete(self, req: DeleteRequest) -> None:
        await self._call(lambda db: self._transaction(db, [req]))

    async def multi(self, operations: list[Operation]) -> None:
        await self._call(lambda db: self._transaction(db, operations))

    async def query(self, key_prefix: str, query: Query) -> QueryResult:
        def rows(db: sqlite3.Connection) -> list[tuple[str, bytes, str]]:
            cursor = db.execute(
                f"SELECT key, value, etag FROM {self.table} WHERE substr(key, 1, ?) = ? "
                "AND (expires IS NULL OR expires > ?)",
                (len(key_prefix), key_prefix, time.time()),
            )
            return [(k[len(key_prefix) :], bytes(v), str(e)) for k, v, e in cursor.fetchall()]

        return run_query(await self._call(rows), query)

    async def purge_expired(self) -> int:
        return await self._call(
            lambda db: (
                db.execute(
                    f"DELETE FROM {self.table} WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
                ).rowcount
            )
        )
