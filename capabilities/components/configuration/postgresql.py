"""configuration.postgresql: items in a table (key, value, version, metadata); subscriptions LISTEN on a
channel fed by a trigger calling pg_notify (as Dapr documents; we install it when metadata pgNotifyChannel is
set on the component)."""

from __future__ import annotations

import json
import logging
from typing import Any

from capabilities import registry
from capabilities.blocks.configuration.contract import ConfigItem, Unsubscribe, UpdateHandler
from capabilities.config.backends import postgres_connect_args, postgres_pool_with_schema, sql_identifier
from capabilities.daprspec.component import ComponentSpec

log = logging.getLogger(__name__)

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$
DECLARE
  data json;
BEGIN
  IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
  PERFORM pg_notify('{channel}',
    json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data)::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {function} ON {table};
CREATE TRIGGER {function} AFTER INSERT OR UPDATE OR DELETE ON {table}
  FOR EACH ROW EXECUTE PROCEDURE {function}();
"""


def _item(value: Any, version: Any, metadata: Any) -> ConfigItem:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = {}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()} if isinstance(metadata, dict) else {}
    return ConfigItem(str(value or ""), str(version or ""), meta)


@registry.register("configuration.postgresql")
class PostgresConfigurationStore:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec = spec
        self.table = spec.metadata.get("table") or spec.metadata.get("configTable") or "configuration"
        self.channel = spec.metadata.get("pgNotifyChannel", "")
        self._pool: Any = None
        self._listeners: list[Any] = []
        self._consumers: set[Any] = set()

    async def init(self) -> None:
        table = sql_identifier(self.table, "table")
        schema = [
            f"CREATE TABLE IF NOT EXISTS {table} (key varchar NOT NULL PRIMARY KEY, "
            "value varchar NOT NULL, "
            "version varchar NOT NULL, metadata json)"
        ]
        if self.channel:
            channel = sql_identifier(self.channel, "pgNotifyChannel")
            function = f"{table.replace('.', '_')}_notify_{channel}"
            schema.append(TRIGGER_SQL.format(function=function, channel=channel, table=table))
        self._pool = await postgres_pool_with_schema(self.spec.metadata, table, schema)

    async def close(self) -> None:
        import asyncio

        for task in list(self._consumers):
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        for conn in self._listeners:
            await conn.close()
        self._listeners.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def features(self) -> set[str]:
        return set()

    async def get(self, keys: list[str], metadata: dict[str, str]) -> dict[str, ConfigItem]:
        sql = f"SELECT key, value, version, metadata FROM {self.table}"
        rows = await (self._pool.fetch(sql + " WHERE key = ANY($1)", keys) if keys else self._pool.fetch(sql))
        return {r["key"]: _item(r["value"], r["version"], r["metadata"]) for r in rows}

    async def subscribe(
        self, keys: list[str], metadata: dict[str, str], handler: UpdateHandler
    ) -> Unsubscribe:
        import asyncio

        import asyncpg

        channel = metadata.get("pgNotifyChannel") or self.channel
        if not channel:
            raise ValueError(
                "metadata pgNotifyChannel is required to subscribe (the channel the trigger notifies)"
            )
        sql_identifier(channel, "pgNotifyChannel")
        wanted = set(keys)
        table = self.table.rsplit(".", 1)[-1].lower()
        conn = await asyncpg.connect(**postgres_connect_args(self.spec.metadata))
        self._listeners.append(conn)
        queue: asyncio.Queue[dict[str, ConfigItem]] = asyncio.Queue()

        async def deliver() -> None:
            # One consumer keeps notifications in commit order.
            while True:
                items = await queue.get()
                try:
                    await handler(items)
                except Exception:
                    log.exception("configuration store %s: update handler failed", self.spec.name)

        consumer = asyncio.create_task(deliver(), name=f"config-pg-{self.spec.name}")
        self._consumers.add(consumer)
        consumer.add_done_callback(self._consumers.discard)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                event = json.loads(payload)
                data = event["data"]
            except (ValueError, KeyError, TypeError):
                log.warning("configuration store %s: ignoring notification %r", self.spec.name, payload[:200])
                return
            if str(event.get("table", "")).lower() != table or (wanted and data.get("key") not in wanted):
                return
            if event.get("action") == "DELETE":
                item = ConfigItem("", "")
            else:
                item = _item(data.get("value"), data.get("version"), data.get("metadata"))
            queue.put_nowait({data["key"]: item})

        await conn.add_listener(channel, on_notify)

        async def unsubscribe() -> None:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            if conn in self._listeners:
                self._listeners.remove(conn)
                await conn.close()

        return unsubscribe
