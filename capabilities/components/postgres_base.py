"""What the PostgreSQL components with one table share: the pool, and the table created at init."""

from __future__ import annotations

from typing import Any

from capabilities.config.backends import postgres_pool_with_schema, sql_identifier
from capabilities.daprspec.component import ComponentSpec


class PostgresTableComponent:
    """`tableName` metadata (default `default_table`); init() opens the pool and runs schema() once (DDL under
    an advisory lock, see postgres_pool_with_schema); close() releases the pool."""

    default_table = ""

    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.table = spec.metadata.get("tableName", self.default_table)
        self._pool: Any = None

    def schema(self, table: str) -> list[str]:
        """The DDL statements for the (validated) table name."""
        raise NotImplementedError

    def pool_options(self) -> dict[str, Any]:
        return {}

    async def init(self) -> None:
        table = sql_identifier(self.table, "tableName")
        self._pool = await postgres_pool_with_schema(
            self.spec.metadata, table, self.schema(table), **self.pool_options()
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def features(self) -> set[str]:
        return set()
