"""pubsub.rabbitmq: one durable exchange per topic, one durable queue per (consumer group, topic).

As Dapr's component: the exchange is named after the topic (kind `exchangeKind`, default fanout), the
queue `<consumerID|group>-<topic>` is bound to it, messages are persistent and published with confirms.
Replicas of one app consume the same queue (each message to one); un-acked messages are requeued by the
broker when a consumer's channel closes (crash) or when the handler fails.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection, ExchangeType

from capabilities.blocks.pubsub import envelope
from capabilities.blocks.pubsub import metadata as md
from capabilities.blocks.pubsub.contract import (
    Feature,
    Handler,
    Message,
    PubSubBackendError,
    SubscribeOptions,
    Unsubscribe,
)
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)


@register("pubsub.rabbitmq")
class RabbitMQPubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.url = md.get_str(spec, "connectionString", "amqp://guest:guest@127.0.0.1:5672/")
        self.consumer_id = md.get_str(spec, "consumerID")
        kind = md.get_str(spec, "exchangeKind", "fanout")
        try:
            self.exchange_kind = ExchangeType(kind)
        except ValueError:
            reason = f"{kind!r} is not one of fanout, topic, direct, headers"
            raise md.invalid(spec, "exchangeKind", reason) from None
        self.redeliver_delay = md.get_duration(spec, "requeueDelay", 0.2)
        self._conn: AbstractRobustConnection | None = None
        self._pub_channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._stoppers: list[Unsubscribe] = []

    async def init(self) -> None:
        try:
            self._conn = await aio_pika.connect_robust(self.url, timeout=3)
        except Exception as exc:
            raise PubSubBackendError(f"rabbitmq {self._where()} is not reachable: {exc}") from exc

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]  # never log the credentials

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.DURABLE, Feature.REDELIVERY, Feature.MESSAGE_TTL}

    async def _exchange(
        self, channel: aio_pika.abc.AbstractChannel, topic: str
    ) -> aio_pika.abc.AbstractExchange:
        return await channel.declare_exchange(topic, self.exchange_kind, durable=True)

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        if self._conn is None or self._conn.is_closed:
            raise PubSubBackendError(f"rabbitmq {self._where()} is not connected")
        try:
            if self._pub_channel is None or self._pub_channel.is_closed:
                self._pub_channel = await self._conn.channel(publisher_confirms=True)
                self._exchanges.clear()
            exchange = self._exchanges.get(topic)
            if exchange is None:
                exchange = self._exchanges[topic] = await self._exchange(self._pub_channel, topic)
            ttl = envelope.parse_ttl(metadata)
            message = aio_pika.Message(
                data,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=dict(metadata),
                expiration=ttl if ttl else None,
            )
            await asyncio.wait_for(exchange.publish(message, routing_key=topic), timeout=5)
        except Exception as exc:
            self._pub_channel = None
            raise PubSubBackendError(f"rabbitmq {self._where()}: {exc!r}") from exc

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        if self._conn is None:
            raise PubSubBackendError(f"component {self.spec.name} used before init()")
        group = self.consumer_id or options.group
        try:
            channel = await self._conn.channel()
            await channel.set_qos(prefetch_count=max(1, options.max_concurrency))
            exchange = await self._exchange(channel, topic)
            queue = await channel.declare_queue(f"{group}-{topic}", durable=True)
            await queue.bind(exchange, routing_key="#" if self.exchange_kind is ExchangeType.TOPIC else topic)
        except Exception as exc:
            raise PubSubBackendError(f"rabbitmq: subscribing {group} to {topic}: {exc!r}") from exc

        running: set[asyncio.Task[None]] = set()

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                running.add(task)
                task.add_done_callback(running.discard)
            headers = {k: str(v) for k, v in (incoming.headers or {}).items()}
            message = Message(topic, incoming.body, headers, str(incoming.delivery_tag))
            try:
                await handler(message)
            except Exception as exc:
                log.debug("rabbitmq: message on %s not acked: %s", topic, exc)
                await asyncio.sleep(self.redeliver_delay)  # avoid a hot requeue loop
                await incoming.nack(requeue=True)
                return
            await incoming.ack()

        consumer_tag = await queue.consume(on_message, no_ack=False)

        async def unsubscribe() -> None:
            try:
                await queue.cancel(consumer_tag)
            except Exception as exc:
                log.debug("rabbitmq: cancel %s: %r", topic, exc)
            for task in list(running):
                task.cancel()
            await channel.close()  # un-acked deliveries go back to the queue
            if unsubscribe in self._stoppers:
                self._stoppers.remove(unsubscribe)

        self._stoppers.append(unsubscribe)
        return unsubscribe

    async def close(self) -> None:
        for stop in list(self._stoppers):
            await stop()
        self._stoppers.clear()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
