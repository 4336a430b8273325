"""lock.postgresql: one row per held lock (owner, expires); expired rows are taken over atomically."""

from __future__ import annotations

from capabilities import registry
from capabilities.blocks.lock.contract import UnlockStatus
from capabilities.components.postgres_base import PostgresTableComponent


@registry.register("lock.postgresql")
class PostgresLockStore(PostgresTableComponent):
    default_table = "locks"

    def schema(self, table: str) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {table} (resource text PRIMARY KEY, owner text NOT NULL, "
            "expires timestamptz NOT NULL)"
        ]

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
