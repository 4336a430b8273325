"""sequencer.postgresql: one row per key; `INSERT .. ON CONFLICT DO UPDATE SET value = value + 1`."""

from __future__ import annotations

from capabilities import registry
from capabilities.blocks.sequencer.contract import Increment
from capabilities.components.postgres_base import PostgresTableComponent


@registry.register("sequencer.postgresql")
class PostgresSequencer(PostgresTableComponent):
    default_table = "sequencer"

    def schema(self, table: str) -> list[str]:
        return [f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, value bigint NOT NULL)"]

    async def next_id(self, key: str, increment: Increment) -> int:
        return int(
            await self._pool.fetchval(
                f"INSERT INTO {self.table} AS s (key, value) VALUES ($1, 1) "
                "ON CONFLICT (key) DO UPDATE SET value = s.value + 1 RETURNING value",
                key,
            )
        )
