"""pubsub.redis: Redis Streams with consumer groups (like Dapr's pubsub.redis).

One stream per topic; the consumer group is `consumerID` metadata or the subscriber's group (the app id),
so replicas share it and other apps have their own. A handled message is XACKed; a failed one stays in
the group's pending list and is reclaimed with XAUTOCLAIM once idle for `processingTimeout` - by this
consumer or by a replica started after the original consumer died (at-least-once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from capabilities.blocks.pubsub import metadata as md
from capabilities.blocks.pubsub.contract import (
    Feature,
    Handler,
    Message,
    PubSubBackendError,
    SubscribeOptions,
    Unsubscribe,
)
from capabilities.blocks.pubsub.tasks import BoundedTasks
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)

# XREADGROUP's reply without decode_responses: [(stream, [(entry id, {field: value}), ...]), ...] or None
# (redis-py types replies loosely).
StreamEntries = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


class _Pipeliner:
    """Coalesces concurrent commands into one pipeline round trip (publishes, acks): throughput under load
    without changing the one-call-per-message API."""

    def __init__(self, client: aioredis.Redis, max_batch: int = 512):
        self.client = client
        self.max_batch = max_batch
        self._items: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, add: Callable[[Any], Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._items.append((add, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="redis:pipeline")
        return await future

    async def _flush(self) -> None:
        while self._items:
            batch, self._items = self._items[: self.max_batch], self._items[self.max_batch :]
            pipe = self.client.pipeline(transaction=False)
            for add, _ in batch:
                add(pipe)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=False):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


@register("pubsub.redis")
class RedisStreamsPubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.host, self.port = md.host_port(spec, "redisHost", "127.0.0.1:6379")
        self.password = md.get_str(spec, "redisPassword") or None
        self.db = md.get_int(spec, "redisDB", 0, minimum=0)
        self.consumer_id = md.get_str(spec, "consumerID")
        self.processing_timeout = md.get_duration(spec, "processingTimeout", 60.0)
        self.redeliver_interval = md.get_duration(spec, "redeliverInterval", 60.0)
        self.max_len = md.get_int(spec, "maxLenApprox", 0, minimum=0)
        self.batch = md.get_int(spec, "queueDepth", 100, minimum=1)
        self.max_connections = md.get_int(spec, "poolSize", 32, minimum=2)
        self._client: aioredis.Redis | None = None
        self._stoppers: list[Unsubscribe] = []

    def _connect(self) -> aioredis.Redis:
        # A blocking pool: a burst of publishes waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool(
            host=self.host,
            port=self.port,
            db=self.db,
            password=self.password,
            socket_connect_timeout=2,
            health_check_interval=10,
            max_connections=self.max_connections,
            timeout=5,
        )
        return aioredis.Redis(connection_pool=pool)

    async def init(self) -> None:
        self._client = self._connect()
        self._writes = _Pipeliner(self._client)
        try:
            await self._client.ping()
        except Exception as exc:
            await self._client.aclose()
            raise PubSubBackendError(f"redis {self.host}:{self.port} is not reachable: {exc}") from exc

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.DURABLE, Feature.REDELIVERY}

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise PubSubBackendError(f"component {self.spec.name} used before init()")
        return self._client

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        fields: dict[str, bytes | str] = {"data": data}
        if metadata:
            fields["metadata"] = json.dumps(metadata)
        max_len = self.max_len or None
        try:
            await self._writes.submit(lambda pipe: pipe.xadd(topic, fields, maxlen=max_len, approximate=True))
        except Exception as exc:
            raise PubSubBackendError(f"redis {self.host}:{self.port}: {exc}") from exc

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        group = self.consumer_id or options.group
        await self._ensure_group(topic, group)
        consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        reader = self._connect()  # XREADGROUP BLOCK holds its connection; keep it off the shared pool
        tasks = BoundedTasks(options.max_concurrency, f"redis:{topic}:{group}")
        sub = _StreamSubscription(self, reader, topic, group, consumer, handler, tasks)
        tasks.start(sub.read_loop())
        tasks.start(sub.reclaim_loop())

        async def unsubscribe() -> None:
            await tasks.stop()
            await sub.drain_acks()
            await reader.aclose()
            if unsubscribe in self._stoppers:
                self._stoppers.remove(unsubscribe)

        self._stoppers.append(unsubscribe)
        return unsubscribe

    async def _ensure_group(self, topic: str, group: str) -> None:
        try:
            # "0": a new group starts at the beginning of the stream, as Dapr's component does.
            await self.client.xgroup_create(topic, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise PubSubBackendError(f"redis: creating group {group} on {topic}: {exc}") from exc

    async def close(self) -> None:
        for stop in list(self._stoppers):
            await stop()
        self._stoppers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _StreamSubscription:
    def __init__(
        self,
        owner: RedisStreamsPubSub,
        reader: aioredis.Redis,
        topic: str,
        group: str,
        consumer: str,
        handler: Handler,
        tasks: BoundedTasks,
    ):
        self.owner, self.reader, self.topic, self.group = owner, reader, topic, group
        self.consumer, self.handler, self.tasks = consumer, handler, tasks
        self._ack_ids: list[bytes] = []
        self._ack_task: asyncio.Task[None] | None = None
        self.in_flight: set[bytes] = set()  # entries being handled here: never reclaimed from ourselves

    async def read_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                response = cast(
                    StreamEntries,
                    await self.reader.xreadgroup(
                        self.group, self.consumer, {self.topic: ">"}, count=self.owner.batch, block=1000
                    ),
                )
                backoff = 0.1
            except ResponseError as exc:
                # NOGROUP / UNBLOCKED: the stream was deleted (FLUSHALL, DEL): recreate the group, go on.
                log.warning("redis pubsub %s: read on %s: %s", self.owner.spec.name, self.topic, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                await self._recreate_group()
                continue
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                name = self.owner.spec.name
                log.warning("redis pubsub %s: read on %s failed (%s); retrying", name, self.topic, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    self.in_flight.add(entry_id)
                    await self.tasks.spawn(self._handle(entry_id, fields))

    async def _recreate_group(self) -> None:
        try:
            await self.owner._ensure_group(self.topic, self.group)
        except PubSubBackendError as exc:
            log.warning("%s", exc)
            await asyncio.sleep(1)

    async def reclaim_loop(self) -> None:
        """Take over entries pending longer than processingTimeout (failed here, or their consumer died)."""
        min_idle_ms = int(self.owner.processing_timeout * 1000)
        while True:
            await asyncio.sleep(self.owner.redeliver_interval)
            try:
                start = "0-0"
                while True:
                    result = await self.reader.xautoclaim(
                        self.topic,
                        self.group,
                        self.consumer,
                        min_idle_ms,
                        start_id=start,
                        count=self.owner.batch,
                    )
                    next_start, claimed = result[0], result[1]
                    for entry_id, fields in claimed:
                        # fields is None when the entry was trimmed from the stream meanwhile; an entry
                        # still being handled here is ours already and must not run twice.
                        if fields and entry_id not in self.in_flight:
                            self.in_flight.add(entry_id)
                            await self.tasks.spawn(self._handle(entry_id, fields))
                    # "0-0": the whole pending list was scanned; otherwise continue from the cursor.
                    if next_start in (b"0-0", "0-0"):
                        break
                    start = next_start
            except Exception as exc:
                name = self.owner.spec.name
                log.warning("redis pubsub %s: reclaim on %s failed: %s", name, self.topic, exc)

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            await self._handle_once(entry_id, fields)
        finally:
            self.in_flight.discard(entry_id)

    async def _handle_once(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        raw_meta = fields.get(b"metadata")
        message = Message(
            topic=self.topic,
            data=fields.get(b"data", b""),
            metadata=json.loads(raw_meta) if raw_meta else {},
            message_id=entry_id.decode(),
        )
        try:
            await self.handler(message)
        except Exception as exc:
            log.debug("redis pubsub: %s on %s not acked (%s); left pending", entry_id, self.topic, exc)
            return
        self._ack_ids.append(entry_id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._flush_acks(), name=f"redis:ack:{self.topic}")

    async def drain_acks(self) -> None:
        if self._ack_task is not None and not self._ack_task.done():
            try:
                await asyncio.wait_for(self._ack_task, 2)
            except Exception as exc:  # reclaimed later: at-least-once still holds
                log.debug("redis pubsub: final acks on %s: %r", self.topic, exc)

    async def _flush_acks(self) -> None:
        """One XACK for every entry handled since the last flush; an ack lost here only means the
        entry is reclaimed and delivered again later (at-least-once)."""
        while self._ack_ids:
            ids, self._ack_ids = self._ack_ids, []
            try:
                await self.reader.xack(self.topic, self.group, *ids)
            except Exception as exc:
                log.warning("redis pubsub: XACK of %d entries on %s failed: %s", len(ids), self.topic, exc)
