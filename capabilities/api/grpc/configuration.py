"""Configuration over gRPC: Get, Subscribe (server stream), Unsubscribe (+ their Alpha1 aliases).

Subscriptions reuse the block's ConfigurationService (ids, store errors, unsubscribe); only the delivery
differs: updates go to the subscriber's stream instead of an HTTP POST to the app. The stream's first
message carries the subscription id. Unsubscribe ends the stream; a client that cancels the stream
unsubscribes it (no leaked subscriptions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2

from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import abort, dapr_errors
from capabilities.blocks.configuration.contract import ConfigItem
from capabilities.blocks.configuration.service import ConfigurationService
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

_END = object()  # queued to end a stream after Unsubscribe


def _items(items: dict[str, ConfigItem]) -> dict[str, common_pb2.ConfigurationItem]:
    return {
        k: common_pb2.ConfigurationItem(value=v.value, version=v.version, metadata=dict(v.metadata))
        for k, v in items.items()
    }


class StreamingConfigurationService(ConfigurationService):
    """The block service, delivering each update to the subscription's queue instead of the app channel."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.queues: dict[str, asyncio.Queue[Any]] = {}

    async def _deliver(self, store_name: str, sub_id: str, items: dict[str, ConfigItem]) -> None:
        queue = self.queues.get(sub_id)
        if queue is not None and items:
            queue.put_nowait(items)

    def _ended(self, sub_id: str, error: DaprError) -> None:
        queue = self.queues.get(sub_id)
        if queue is not None:
            queue.put_nowait(error)  # the stream ends with this error (SubscribeConfiguration)

    @property
    def active(self) -> int:
        return len(self._subscriptions)


class ConfigurationApi(ApiBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = StreamingConfigurationService(runtime)

    @dapr_errors
    async def GetConfiguration(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> configuration_pb2.GetConfigurationResponse:
        items = await self.config.get(request.store_name, list(request.keys), dict(request.metadata))
        return configuration_pb2.GetConfigurationResponse(items=_items(items))

    async def GetConfigurationAlpha1(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.GetConfiguration(request, context)

    async def SubscribeConfiguration(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[configuration_pb2.SubscribeConfigurationResponse]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        try:
            sub_id = await self.config.subscribe(
                request.store_name, list(request.keys), dict(request.metadata)
            )
        except DaprError as err:
            await abort(context, err)
        self.config.queues[sub_id] = queue
        try:
            yield configuration_pb2.SubscribeConfigurationResponse(id=sub_id)
            while True:
                items = await queue.get()
                if items is _END:
                    return
                if isinstance(items, DaprError):  # its component was removed or refused a re-subscribe
                    await abort(context, items)
                yield configuration_pb2.SubscribeConfigurationResponse(id=sub_id, items=_items(items))
        finally:
            self.config.queues.pop(sub_id, None)
            if sub_id in self.config._subscriptions:  # client went away without Unsubscribe
                try:
                    await self.config.unsubscribe(request.store_name, sub_id)
                except Exception as exc:
                    log.warning("configuration subscription %s: unsubscribe failed: %s", sub_id, exc)

    async def SubscribeConfigurationAlpha1(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async for response in self.SubscribeConfiguration(request, context):
            yield response

    @dapr_errors
    async def UnsubscribeConfiguration(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> configuration_pb2.UnsubscribeConfigurationResponse:
        try:
            await self.config.unsubscribe(request.store_name, request.id)
        except DaprError as err:
            if err.error_code != "ERR_CONFIGURATION_UNSUBSCRIBE":
                raise  # unknown store: a gRPC error like daprd
            return configuration_pb2.UnsubscribeConfigurationResponse(ok=False, message=err.message)
        queue = self.config.queues.get(request.id)
        if queue is not None:
            queue.put_nowait(_END)
        return configuration_pb2.UnsubscribeConfigurationResponse(ok=True)

    async def UnsubscribeConfigurationAlpha1(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.UnsubscribeConfiguration(request, context)

    async def close_configuration(self) -> None:
        for queue in list(self.config.queues.values()):
            queue.put_nowait(_END)
        await self.config.close()
