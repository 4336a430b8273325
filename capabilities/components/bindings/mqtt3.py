"""bindings.mqtt3: read from / publish to an MQTT topic (Dapr's bindings.mqtt3), QoS 1.

Metadata `url` (tcp://host:port), `topic`, optional `consumerID` (input uses `$share/<id>/<topic>` when set).
Output operation `create` publishes the data (metadata `topic` overrides the component's topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import aiomqtt

from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    Feature,
    InputHandler,
    InvokeRequest,
    InvokeResponse,
    StopReading,
)
from capabilities.blocks.pubsub import metadata as md
from capabilities.components.pubsub.mqtt3 import parse_broker_url
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)


@register("bindings.mqtt3")
class Mqtt3Binding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.host, self.port = parse_broker_url(spec)
        self.topic = md.get_str(spec, "topic", required=True)
        self.consumer_id = md.get_str(spec, "consumerID")
        self.retry_delay = md.get_duration(spec, "retryDelay", 0.2)
        self._publisher: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._stops: list[StopReading] = []

    def _client(self, role: str) -> aiomqtt.Client:
        ident = f"mecha-binding-{self.spec.name}-{role}-{uuid.uuid4().hex[:8]}"
        return aiomqtt.Client(self.host, self.port, identifier=ident, timeout=3)

    async def init(self) -> None:
        client = self._client("pub")
        try:
            await client.__aenter__()
        except Exception as exc:
            raise BindingBackendError(f"mqtt {self.host}:{self.port} is not reachable: {exc}") from exc
        self._publisher = client

    def features(self) -> set[str]:
        return {Feature.INPUT, Feature.OUTPUT}

    def operations(self) -> list[str]:
        return ["create"]

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        topic = request.metadata.get("topic") or self.topic
        async with self._lock:
            try:
                if self._publisher is None:
                    await self.init()
                assert self._publisher is not None
                await self._publisher.publish(topic, request.data, qos=1)
            except BindingBackendError:
                raise
            except Exception as exc:
                self._publisher = None
                raise BindingBackendError(f"mqtt {self.host}:{self.port}: {exc}") from exc
        return InvokeResponse()

    async def read(self, handler: InputHandler) -> StopReading:
        client = self._client("sub")
        filter_ = f"$share/{self.consumer_id}/{self.topic}" if self.consumer_id else self.topic
        try:
            await client.__aenter__()
            await client.subscribe(filter_, qos=1)
        except Exception as exc:
            raise BindingBackendError(f"mqtt: subscribing {filter_}: {exc}") from exc

        async def loop() -> None:
            async for message in client.messages:
                payload = (
                    message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                )
                meta = {"topic": str(message.topic)}
                while True:  # QoS 1 is acked on receipt by the client library: retry here
                    try:
                        await handler(payload, meta)
                        break
                    except Exception as exc:
                        log.warning(
                            "mqtt binding %s: event not delivered (%s); retrying", self.spec.name, exc
                        )
                        await asyncio.sleep(self.retry_delay)

        task = asyncio.create_task(loop(), name=f"mqtt-binding:{self.spec.name}")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            if stop in self._stops:
                self._stops.remove(stop)

        self._stops.append(stop)
        return stop

    async def close(self) -> None:
        for stop in list(self._stops):
            await stop()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.__aexit__(None, None, None)
            self._publisher = None
