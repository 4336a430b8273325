"""sequencer.postgresql: one row per key; `INSERT .. ON CONFLICT DO UPDATE SET value = value + 1`."""

from __future__ import annotations

from typing import Any

from capabilities import registry
from capabilities.blocks.sequencer.contract import Increment
from capabilities.components.spec import ComponentSpec
from capabilities.config.backends import postgres_pool_with_schema, sql_identifier


@registry.register("sequencer.postgresql")
class PostgresSequencer:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.table = spec.metadata.get("tableName", "sequencer")
        self._pool: Any = None

    async def init(self) -> None:
        table = sql_identifier(self.table, "tableName")
        self._pool = await postgres_pool_with_schema(
            self.spec.metadata,
            table,
            [f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, value bigint NOT NULL)"],
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def features(self) -> set[str]:
        return set()

    async def next_id(self, key: str, increment: Increment) -> int:
        return int(
            await self._pool.fetchval(
                f"INSERT INTO {self.table} AS s (key, value) VALUES ($1, 1) "
                "ON CONFLICT (key) DO UPDATE SET value = s.value + 1 RETURNING value",
                key,
            )
        )
