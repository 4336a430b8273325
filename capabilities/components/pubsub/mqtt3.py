"""pubsub.mqtt3: MQTT 3.1.1 over aiomqtt, QoS 1, shared subscriptions for consumer groups.

A subscription with a group subscribes to `$share/<group>/<topic>` so replicas of one app split the
messages (Mosquitto >= 1.6 supports shared subscriptions on 3.1.1 clients). The client library acks a
QoS 1 message on receipt, so a failing handler is retried here while the subscription lives; MQTT is
therefore declared REDELIVERY but not DURABLE. Metadata (and so the CloudEvent) travels in the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import aiomqtt

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


def parse_broker_url(spec: ComponentSpec) -> tuple[str, int]:
    url = md.get_str(spec, "url", "tcp://127.0.0.1:1883")
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise md.invalid(spec, "url", f"{url!r} is not tcp://host:port")
    return host or "127.0.0.1", int(port)


@register("pubsub.mqtt3")
class Mqtt3PubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.host, self.port = parse_broker_url(spec)
        self.qos = md.get_int(spec, "qos", 1, minimum=0)
        self.consumer_id = md.get_str(spec, "consumerID")
        self.retry_delay = md.get_duration(spec, "redeliverDelay", 0.2)
        self._publisher: aiomqtt.Client | None = None
        self._pub_lock = asyncio.Lock()
        self._stoppers: list[Unsubscribe] = []

    def _client(self, suffix: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"mecha-{self.spec.name}-{suffix}-{uuid.uuid4().hex[:8]}",
            timeout=3,
        )

    async def init(self) -> None:
        await self._connect_publisher()

    async def _connect_publisher(self) -> aiomqtt.Client:
        client = self._client("pub")
        try:
            await client.__aenter__()
        except Exception as exc:
            raise PubSubBackendError(f"mqtt {self.host}:{self.port} is not reachable: {exc}") from exc
        self._publisher = client
        return client

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.REDELIVERY}

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        async with self._pub_lock:
            try:
                client = self._publisher or await self._connect_publisher()
                await client.publish(topic, data, qos=self.qos)
            except Exception as exc:
                await self._drop_publisher()
                raise PubSubBackendError(f"mqtt {self.host}:{self.port}: {exc}") from exc

    async def _drop_publisher(self) -> None:
        client, self._publisher = self._publisher, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        group = self.consumer_id or options.group
        filter_ = f"$share/{group}/{topic}" if group else topic
        client = self._client("sub")
        try:
            await client.__aenter__()
            await client.subscribe(filter_, qos=self.qos)
        except Exception as exc:
            raise PubSubBackendError(f"mqtt: subscribing {filter_}: {exc}") from exc
        tasks = BoundedTasks(options.max_concurrency, f"mqtt:{topic}:{group}")

        async def handle(message: Message) -> None:
            while True:  # the broker already considers it delivered: retry here until acked
                try:
                    await handler(message)
                    return
                except Exception as exc:
                    log.debug("mqtt: message on %s not acked: %s", topic, exc)
                    await asyncio.sleep(self.retry_delay)

        async def read_loop() -> None:
            async for incoming in client.messages:
                raw = incoming.payload
                payload = raw if isinstance(raw, bytes) else str(raw).encode()
                await tasks.spawn(handle(Message(str(incoming.topic), payload, {}, str(incoming.mid))))

        tasks.start(read_loop())

        async def unsubscribe() -> None:
            await tasks.stop()
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            if unsubscribe in self._stoppers:
                self._stoppers.remove(unsubscribe)

        self._stoppers.append(unsubscribe)
        return unsubscribe

    async def close(self) -> None:
        for stop in list(self._stoppers):
            await stop()
        self._stoppers.clear()
        await self._drop_publisher()
