"""pubsub.jetstream: NATS JetStream with durable pull consumers.

Each topic is a subject captured by a stream (`streamName` metadata, else one stream per topic created on
demand). The durable consumer is named after the group (the app id, or `durableName` metadata) and topic:
replicas of one app pull from the same durable, so each message goes to one of them (the queue-group
semantic), while another app has its own durable and gets every message. Un-acked messages come back
after `ackWait` - also to a replica started after the original subscriber died.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re

import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

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
from capabilities.components.spec import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _safe_name(*parts: str) -> str:
    """Stream/durable names may not contain . * > or spaces; keep them readable and collision-free."""
    joined = "-".join(parts)
    cleaned = _UNSAFE.sub("_", joined)
    if cleaned != joined:
        cleaned += "_" + hashlib.sha1(joined.encode()).hexdigest()[:8]
    return cleaned


@register("pubsub.jetstream")
class JetStreamPubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.url = md.get_str(spec, "natsURL", "nats://127.0.0.1:4222")
        self.stream_name = md.get_str(spec, "streamName")
        self.durable_name = md.get_str(spec, "durableName")
        self.ack_wait = md.get_duration(spec, "ackWait", 30.0)
        self.batch = md.get_int(spec, "pullBatch", 64, minimum=1)
        self.publish_timeout = md.get_duration(spec, "publishTimeout", 5.0)
        self.connect_timeout = md.get_duration(spec, "connectTimeout", 3.0)
        self._nc: nats.NATS | None = None
        self._streams: set[str] = set()
        self._stoppers: list[Unsubscribe] = []

    async def init(self) -> None:
        nc = nats.NATS()
        try:
            # Reconnect forever once connected (a broker restart must not kill subscriptions), but bound
            # the first connection so that init fails clearly when the server is down.
            await asyncio.wait_for(
                nc.connect(
                    self.url,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                ),
                timeout=self.connect_timeout,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise PubSubBackendError(f"nats {self.url} is not reachable: {reason}") from exc
        self._nc = nc
        self._js = self._nc.jetstream()

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.DURABLE, Feature.REDELIVERY}

    def _stream_for(self, topic: str) -> str:
        return self.stream_name or _safe_name("mecha", topic)

    async def _ensure_stream(self, topic: str) -> str:
        stream = self._stream_for(topic)
        if stream in self._streams:
            return stream
        try:
            await self._js.stream_info(stream)
        except NotFoundError:
            if self.stream_name:
                reason = f"jetstream: stream {stream} (metadata streamName) does not exist"
                raise PubSubBackendError(reason) from None
            await self._js.add_stream(StreamConfig(name=stream, subjects=[topic]))
        self._streams.add(stream)
        return stream

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        if self._nc is None or not self._nc.is_connected:
            raise PubSubBackendError(f"nats {self.url} is not connected")
        try:
            stream = await self._ensure_stream(topic)
            await self._js.publish(
                topic, data, timeout=self.publish_timeout, stream=stream, headers=dict(metadata) or None
            )
        except PubSubBackendError:
            raise
        except Exception as exc:
            raise PubSubBackendError(f"nats {self.url}: {exc!r}") from exc

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        try:
            stream = await self._ensure_stream(topic)
            durable = _safe_name(self.durable_name or options.group, topic)
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=topic,
                max_ack_pending=max(1000, options.max_concurrency),
            )
            psub = await self._js.pull_subscribe(topic, durable=durable, stream=stream, config=config)
        except PubSubBackendError:
            raise
        except Exception as exc:
            raise PubSubBackendError(f"jetstream: subscribing {options.group} to {topic}: {exc!r}") from exc
        tasks = BoundedTasks(options.max_concurrency, f"jetstream:{topic}:{options.group}")

        async def pull_loop() -> None:
            while True:
                try:
                    msgs = await psub.fetch(self.batch, timeout=1)
                except NatsTimeoutError:
                    continue
                except Exception as exc:
                    log.warning("jetstream %s: fetch on %s failed (%r); retrying", self.spec.name, topic, exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    await tasks.spawn(handle(msg))

        async def handle(msg: nats.aio.msg.Msg) -> None:
            message = Message(topic, msg.data, dict(msg.headers or {}), str(msg.metadata.sequence.stream))
            try:
                await handler(message)
            except Exception as exc:
                log.debug("jetstream: message on %s not acked: %s", topic, exc)
                await msg.nak(delay=1.0)
                return
            await msg.ack()

        tasks.start(pull_loop())

        async def unsubscribe() -> None:
            await tasks.stop()
            try:
                await psub.unsubscribe()  # the durable consumer stays on the server: that is the point
            except Exception as exc:
                log.debug("jetstream: unsubscribe %s: %r", topic, exc)
            if unsubscribe in self._stoppers:
                self._stoppers.remove(unsubscribe)

        self._stoppers.append(unsubscribe)
        return unsubscribe

    async def close(self) -> None:
        for stop in list(self._stoppers):
            await stop()
        self._stoppers.clear()
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception as exc:
                log.debug("jetstream: close: %r", exc)
            self._nc = None
