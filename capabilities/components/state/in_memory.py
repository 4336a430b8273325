"""state.in-memory: a process-local store with ETags, TTL, transactions and query (the conformance oracle)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

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
from capabilities.daprspec.component import ComponentSpec


@dataclass
class _Entry:
    value: bytes
    version: int
    expires_at: float | None


@registry.register("state.in-memory")
class InMemoryStateStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self._data: dict[str, _Entry] = {}
        # One counter for the whole store: an etag is never reused, even after delete + re-create.
        self._versions = itertools.count(1)
        self._writes = 0

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()

    def features(self) -> set[str]:
        return {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API}

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= time.monotonic():
            del self._data[key]
            return None
        return entry

    def _check(self, op: Operation) -> None:
        entry = self._live(op.key)
        check_version(
            op.key, entry.version if entry else None, op.etag, isinstance(op, SetRequest) and op.first_write
        )

    def _apply(self, op: Operation) -> None:
        if isinstance(op, DeleteRequest):
            self._data.pop(op.key, None)
            return
        expires = None
        if op.ttl_seconds is not None and op.ttl_seconds >= 0:
            expires = time.monotonic() + op.ttl_seconds
        self._data[op.key] = _Entry(op.value, next(self._versions), expires)
        self._writes += 1
        if self._writes % 1000 == 0:
            for key in list(self._data):
                self._live(key)

    async def get(self, key: str) -> StoredItem | None:
        entry = self._live(key)
        return StoredItem(entry.value, str(entry.version)) if entry else None

    async def set(self, req: SetRequest) -> None:
        self._check(req)
        self._apply(req)

    async def delete(self, req: DeleteRequest) -> None:
        self._check(req)
        self._apply(req)

    async def multi(self, operations: list[Operation]) -> None:
        # No await between check and apply: atomic with respect to every other coroutine.
        for op in operations:
            self._check(op)
        for op in operations:
            self._apply(op)

    async def query(self, key_prefix: str, query: Query) -> QueryResult:
        rows = []
        for key in list(self._data):
            entry = self._live(key)
            if entry is not None and key.startswith(key_prefix):
                rows.append((key[len(key_prefix) :], entry.value, str(entry.version)))
        return run_query(rows, query)
