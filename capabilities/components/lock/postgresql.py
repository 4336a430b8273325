"""lock.postgresql: one row per held lock (owner, expires); expired rows are taken over atomically."""

from __future__ import annotations

from typing import Any

from capabilities import registry
from capabilities.blocks.lock.contract import UnlockStatus
from capabilities.components.spec import ComponentSpec
from capabilities.config.backends import postgres_pool_with_schema, sql_identifier


@registry.register("lock.postgresql")
class PostgresLockStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.table = spec.metadata.get("tableName", "locks")
        self._pool: Any = None

    async def init(self) -> None:
        table = sql_identifier(self.table, "tableName")
        self._pool = await postgres_pool_with_schema(
            self.spec.metadata,
            table,
            [
                f"CREATE TABLE IF NOT EXISTS {table} (resource text PRIMARY KEY, owner text NOT NULL, "
                "expires timestamptz NOT NULL)"
            ],
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def features(self) -> set[str]:
        return set()

    async def try_lock(self, resource_id: str, owner: str, expiry_s: int) -> bool:
        status = await self._pool.execute(
            f"INSERT INTO {self.table} AS l (resource, owner, expires) "
            "VALUES ($1, $2, now() + ($3::int * interval '1 second')) "
            "ON CONFLICT (resource) DO UPDATE SET owner = EXCLUDED.owner, expires = EXCLUDED.expires "
            "WHERE l.expires <= now()",
            resource_id,
            owner,
            expiry_s,
        )
        return status.endswith(" 1")

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(
                f"SELECT owner FROM {self.table} WHERE resource = $1 AND expires > now() FOR UPDATE",
                resource_id,
            )
            if current is None:
                return UnlockStatus.LOCK_DOES_NOT_EXIST
            if current != owner:
                return UnlockStatus.LOCK_BELONGS_TO_OTHERS
            await conn.execute(f"DELETE FROM {self.table} WHERE resource = $1", resource_id)
            return UnlockStatus.SUCCESS
