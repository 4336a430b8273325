"""bindings.rabbitmq: read from / send to a RabbitMQ queue (Dapr's bindings.rabbitmq).

Metadata `host` (amqp URL), `queueName` (required), `durable` (true), `deleteWhenUnused` (false),
`prefetchCount`. Output `create` publishes persistent messages to the queue (metadata `ttlInSeconds`);
input acks after the app took the event, else requeues it (nothing accepted by the broker is lost).
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    BindingRequestError,
    Feature,
    InputHandler,
    InvokeRequest,
    InvokeResponse,
    StopReading,
)
from capabilities.blocks.pubsub import metadata as md
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)


@register("bindings.rabbitmq")
class RabbitMQBinding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.url = md.get_str(spec, "host", "amqp://guest:guest@127.0.0.1:5672/")
        self.queue_name = md.get_str(spec, "queueName", required=True)
        self.durable = md.get_bool(spec, "durable", True)
        self.auto_delete = md.get_bool(spec, "deleteWhenUnused", False)
        self.prefetch = md.get_int(spec, "prefetchCount", 16, minimum=1)
        self.requeue_delay = md.get_duration(spec, "requeueDelay", 0.2)
        self._conn: AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._stops: list[StopReading] = []

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]

    async def init(self) -> None:
        try:
            self._conn = await aio_pika.connect_robust(self.url, timeout=3)
            self._channel = await self._conn.channel(publisher_confirms=True)
            await self._declare(self._channel)
        except Exception as exc:
            raise BindingBackendError(f"rabbitmq {self._where()} is not reachable: {exc}") from exc

    async def _declare(self, channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
        return await channel.declare_queue(
            self.queue_name, durable=self.durable, auto_delete=self.auto_delete
        )

    def features(self) -> set[str]:
        return {Feature.INPUT, Feature.OUTPUT}

    def operations(self) -> list[str]:
        return ["create"]

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if self._channel is None or self._channel.is_closed:
            raise BindingBackendError(f"rabbitmq {self._where()} is not connected")
        ttl_raw = request.metadata.get("ttlInSeconds", "")
        if ttl_raw and not ttl_raw.isdigit():
            raise BindingRequestError(f"metadata ttlInSeconds {ttl_raw!r} is not a non-negative integer")
        message = aio_pika.Message(
            request.data,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            if self.durable
            else aio_pika.DeliveryMode.NOT_PERSISTENT,
            expiration=int(ttl_raw) if ttl_raw else None,
        )
        try:
            await asyncio.wait_for(
                self._channel.default_exchange.publish(message, routing_key=self.queue_name), timeout=5
            )
        except Exception as exc:
            raise BindingBackendError(f"rabbitmq {self._where()}: {exc!r}") from exc
        return InvokeResponse()

    async def read(self, handler: InputHandler) -> StopReading:
        if self._conn is None:
            raise BindingBackendError(f"binding {self.spec.name} used before init()")
        channel = await self._conn.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await self._declare(channel)
        running: set[asyncio.Task[None]] = set()

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                running.add(task)
                task.add_done_callback(running.discard)
            meta = {str(k): str(v) for k, v in (incoming.headers or {}).items()}
            try:
                await handler(incoming.body, meta)
            except Exception as exc:
                log.warning("rabbitmq binding %s: event not delivered (%s); requeued", self.spec.name, exc)
                await asyncio.sleep(self.requeue_delay)
                await incoming.nack(requeue=True)
                return
            await incoming.ack()

        tag = await queue.consume(on_message, no_ack=False)

        async def stop() -> None:
            try:
                await queue.cancel(tag)
            except Exception as exc:
                log.debug("rabbitmq binding: cancel: %r", exc)
            for task in list(running):
                task.cancel()
            await channel.close()
            if stop in self._stops:
                self._stops.remove(stop)

        self._stops.append(stop)
        return stop

    async def close(self) -> None:
        for stop in list(self._stops):
            await stop()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
            self._channel = None
