"""configuration.redis: items are Redis strings "value||version" (Dapr's format); subscriptions use keyspace
notifications (`notify-keyspace-events` is extended with K$gx if the server does not emit them yet)."""

from __future__ import annotations

import asyncio
import logging

from capabilities import registry
from capabilities.blocks.configuration.contract import ConfigItem, Unsubscribe, UpdateHandler
from capabilities.components.redis_base import RedisComponent
from capabilities.daprspec.component import ComponentSpec

log = logging.getLogger(__name__)


def parse_item(raw: bytes | None) -> ConfigItem | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace")
    value, sep, version = text.rpartition("||")
    return ConfigItem(value, version) if sep else ConfigItem(text, "")


@registry.register("configuration.redis")
class RedisConfigurationStore(RedisComponent):
    def __init__(self, spec: ComponentSpec) -> None:
        super().__init__(spec)
        self.db = int(spec.metadata.get("redisDB") or 0)
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().close()

    async def get(self, keys: list[str], metadata: dict[str, str]) -> dict[str, ConfigItem]:
        if not keys:
            keys = [k.decode() async for k in self._client.scan_iter(count=500, _type="string")]
        if not keys:
            return {}
        values = await self._client.mget(keys)
        return {k: item for k, v in zip(keys, values, strict=True) if (item := parse_item(v)) is not None}

    async def _ensure_notifications(self) -> None:
        current = (await self._client.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
        flags = current if isinstance(current, str) else current.decode()
        wanted = "K" + ("" if "A" in flags else "$gx")
        missing = "".join(c for c in wanted if c not in flags)
        if missing:
            await self._client.config_set("notify-keyspace-events", flags + missing)

    async def subscribe(
        self, keys: list[str], metadata: dict[str, str], handler: UpdateHandler
    ) -> Unsubscribe:
        await self._ensure_notifications()
        pubsub = self._client.pubsub()
        prefix = f"__keyspace@{self.db}__:"
        await pubsub.psubscribe(*([prefix + k for k in keys] if keys else [prefix + "*"]))
        ready = asyncio.Event()

        async def listen() -> None:
            try:
                ready.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    key = message["channel"].decode()[len(prefix) :]
                    event = (
                        message["data"].decode()
                        if isinstance(message["data"], bytes)
                        else str(message["data"])
                    )
                    if event == "set":
                        item = parse_item(await self._client.get(key)) or ConfigItem("", "")
                    elif event in ("del", "expired"):
                        item = ConfigItem("", "")
                    else:
                        continue
                    try:
                        await handler({key: item})
                    except Exception:
                        log.exception("configuration store %s: update handler failed", self.spec.name)
            finally:
                await pubsub.aclose()

        task = asyncio.create_task(listen(), name=f"config-redis-{self.spec.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await ready.wait()

        async def unsubscribe() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return unsubscribe
