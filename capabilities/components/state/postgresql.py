"""state.postgresql: table (key, value bytea, doc jsonb, etag bigint, expiredate), asyncpg pool.

`value` keeps the exact bytes saved; `doc` holds the same value as JSONB (when it is JSON) for the query API.
ETags come from a sequence, so they are never reused. Conditional statements make OCC race-free.
"""

from __future__ import annotations

import json
from typing import Any

from capabilities import registry
from capabilities.blocks.state.contract import (
    DeleteRequest,
    Feature,
    Operation,
    Query,
    QueryItem,
    QueryResult,
    SetRequest,
    StoredItem,
    etag_mismatch,
    parse_version_etag,
)
from capabilities.blocks.state.query import decode_token
from capabilities.components.postgres_base import PostgresTableComponent

LIVE = "(expiredate IS NULL OR expiredate > now())"


def _json_or_none(value: bytes) -> str | None:
    try:
        json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return value.decode()


class _SqlFilter:
    """Translate a parsed query filter into a WHERE clause with numbered parameters."""

    def __init__(self, first_param: int) -> None:
        self.params: list[Any] = []
        self._next = first_param

    def param(self, value: Any) -> str:
        self.params.append(value)
        placeholder = f"${self._next}"
        self._next += 1
        return placeholder

    def build(self, flt: dict[str, Any]) -> str:
        ((op, arg),) = flt.items()
        if op in ("AND", "OR"):
            return "(" + f" {op} ".join(self.build(sub) for sub in arg) + ")"
        ((path, value),) = arg.items()
        target = f"(doc #> {self.param(path.split('.'))}::text[])"
        if op == "IN":
            return f"{target} = ANY({self.param([json.dumps(v) for v in value])}::jsonb[])"
        literal = f"{self.param(json.dumps(value))}::jsonb"
        if op == "EQ":
            return f"{target} = {literal}"
        if op == "NEQ":
            return f"{target} IS DISTINCT FROM {literal}"
        sql_op = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}[op]
        return f"(jsonb_typeof({target}) = jsonb_typeof({literal}) AND {target} {sql_op} {literal})"


@registry.register("state.postgresql")
class PostgresStateStore(PostgresTableComponent):
    default_table = "state"

    def schema(self, table: str) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, value bytea NOT NULL, "
            "doc jsonb, etag bigint NOT NULL, expiredate timestamptz, "
            "updatedate timestamptz NOT NULL DEFAULT now())",
            f"CREATE SEQUENCE IF NOT EXISTS {table}_etag_seq",
        ]

    def pool_options(self) -> dict[str, Any]:
        return {"max_size": int(self.spec.metadata.get("maxConns", "10"))}

    def features(self) -> set[str]:
        return {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API}

    async def get(self, key: str) -> StoredItem | None:
        row = await self._pool.fetchrow(
            f"SELECT value, etag FROM {self.table} WHERE key = $1 AND {LIVE}", key
        )
        return None if row is None else StoredItem(bytes(row["value"]), str(row["etag"]))

    async def _apply(self, conn: Any, op: Operation) -> None:
        t = self.table
        expected = parse_version_etag(op.etag) if op.etag else None
        if isinstance(op, DeleteRequest):
            if expected is None:
                await conn.execute(f"DELETE FROM {t} WHERE key = $1", op.key)
                return
            status = await conn.execute(
                f"DELETE FROM {t} WHERE key = $1 AND etag = $2 AND {LIVE}", op.key, expected
            )
            if status.endswith(" 0"):
                raise etag_mismatch(op.key)
            return
        ttl = op.ttl_seconds if op.ttl_seconds is not None and op.ttl_seconds >= 0 else None
        values = (op.key, op.value, _json_or_none(op.value), ttl)
        new_row = (
            "$2, $3::jsonb, nextval('" + t + "_etag_seq'), now() + ($4::int * interval '1 second'), now()"
        )
        if expected is not None:
            status = await conn.execute(
                f"UPDATE {t} SET (value, doc, etag, expiredate, updatedate) = ({new_row}) "
                f"WHERE key = $1 AND etag = $5 AND {LIVE}",
                *values,
                expected,
            )
            if status.endswith(" 0"):
                raise etag_mismatch(op.key)
            return
        upsert = (
            f"INSERT INTO {t} (key, value, doc, etag, expiredate, updatedate) VALUES ($1, {new_row}) "
            "ON CONFLICT (key) DO UPDATE SET (value, doc, etag, expiredate, updatedate) = "
            "(EXCLUDED.value, EXCLUDED.doc, EXCLUDED.etag, EXCLUDED.expiredate, EXCLUDED.updatedate)"
        )
        if op.first_write:
            # Only an absent (or expired) row may be written.
            upsert += f" WHERE {t}.expiredate IS NOT NULL AND {t}.expiredate <= now()"
        status = await conn.execute(upsert, *values)
        if status.endswith(" 0"):
            raise etag_mismatch(op.key)

    async def set(self, req: SetRequest) -> None:
        async with self._pool.acquire() as conn:
            await self._apply(conn, req)

    async def delete(self, req: DeleteRequest) -> None:
        async with self._pool.acquire() as conn:
            await self._apply(conn, req)

    async def multi(self, operations: list[Operation]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for op in operations:
                await self._apply(conn, op)

    async def query(self, key_prefix: str, query: Query) -> QueryResult:
        sql_filter = _SqlFilter(2)
        where = f"starts_with(key, $1) AND {LIVE} AND doc IS NOT NULL"
        if query.filter is not None:
            where += " AND " + sql_filter.build(query.filter)
        order = [
            f"(doc #> {sql_filter.param(path.split('.'))}::text[]) {'DESC' if desc else 'ASC'} NULLS LAST"
            for path, desc in query.sort
        ]
        order.append("key ASC")
        offset = decode_token(query.token)
        sql = f"SELECT key, value, etag FROM {self.table} WHERE {where} ORDER BY {', '.join(order)}"
        if query.limit:
            sql += f" LIMIT {query.limit + 1} OFFSET {offset}"
        elif offset:
            sql += f" OFFSET {offset}"
        rows = await self._pool.fetch(sql, key_prefix, *sql_filter.params)
        more = bool(query.limit) and len(rows) > query.limit
        rows = rows[: query.limit] if query.limit else rows
        items = [QueryItem(r["key"][len(key_prefix) :], bytes(r["value"]), str(r["etag"])) for r in rows]
        return QueryResult(items, str(offset + query.limit) if more else None)
