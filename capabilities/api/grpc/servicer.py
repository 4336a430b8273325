"""The Dapr gRPC servicer: one mixin per building block, over the generated DaprServicer.

Methods Mecha does not implement (actors, workflows, jobs, crypto, conversation...) answer UNIMPLEMENTED
with a message naming the method, as daprd does for a disabled API.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2, dapr_pb2_grpc

from capabilities.api.grpc.bindings import BindingsApi
from capabilities.api.grpc.configuration import ConfigurationApi
from capabilities.api.grpc.invoke import InvokeApi
from capabilities.api.grpc.lock import LockApi
from capabilities.api.grpc.metadata import MetadataApi
from capabilities.api.grpc.pubsub import PubSubApi
from capabilities.api.grpc.secrets import SecretsApi
from capabilities.api.grpc.state import StateApi
from capabilities.api.grpc.streaming import StreamingSubscriptionsApi

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

MIXINS: tuple[type, ...] = (
    StateApi,
    PubSubApi,
    StreamingSubscriptionsApi,
    SecretsApi,
    ConfigurationApi,
    LockApi,
    InvokeApi,
    MetadataApi,
    BindingsApi,
)


def _unimplemented(name: str, streaming: bool) -> Any:
    message = f"{name} is not implemented by Mecha's capability service"

    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield  # pragma: no cover

    return stream if streaming else unary


class _Base(dapr_pb2_grpc.DaprServicer):
    pass


# Replace the generated synchronous stubs (which grpc.aio cannot run without a thread pool) by async ones.
for _method in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods:
    setattr(_Base, _method.name, _unimplemented(_method.name, _method.server_streaming))


class DaprApi(*MIXINS, _Base):  # type: ignore[misc]
    def __init__(self, runtime: Runtime) -> None:
        for mixin in MIXINS:
            mixin.__init__(self, runtime)  # type: ignore[misc]
        self._background: set[asyncio.Task[Any]] = set()
        self.app_protocol = "http"  # set by start_grpc (APP_PROTOCOL)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self) -> None:
        """Called before the server stops: release what streams and background work hold."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.close_configuration()
        await self.close_locks()
        await self.close_invoke()
