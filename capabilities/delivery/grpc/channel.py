"""The gRPC channel to an app that implements dapr.proto.runtime.v1.AppCallback (APP_PROTOCOL=grpc).

Like the HTTP app channel it adds `dapr-api-token: APP_API_TOKEN` when set, and it reaches the app at its
URL (in a mesh: the app proxy's inbound listener, which must speak HTTP/2 for a gRPC app).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from google.protobuf import empty_pb2

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


def app_target(runtime: Runtime) -> str:
    """host:port of the app from settings.app_url / settings.app_port (APP_PORT)."""
    settings = getattr(runtime, "settings", None)
    url = getattr(settings, "app_url", None)
    port = getattr(settings, "app_port", None) or os.environ.get("APP_PORT")
    if url:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.hostname and parts.port:
            return f"{parts.hostname}:{parts.port}"
    if port:
        return f"127.0.0.1:{port}"
    raise ValueError("APP_PROTOCOL=grpc needs the app's address: set APP_PORT (or MECHA_APP_URL)")


class AppCallbackChannel:
    def __init__(self, target: str, *, app_api_token: str | None = None, max_message_bytes: int = 4 << 20):
        self.target = target
        self._metadata: tuple[tuple[str, str], ...] = (
            (("dapr-api-token", app_api_token),) if app_api_token else ()
        )
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self.app = appcallback_pb2_grpc.AppCallbackStub(self._channel)
        self.health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self._channel)
        self.alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(self._channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def call(
        self,
        method: Any,
        request: Any,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        trace: tuple[tuple[str, Any], ...] = (),
        **extra: Any,
    ) -> Any:
        """`trace`: the trace context metadata of this call (capabilities.tracing.grpc_trace_metadata)."""
        return await method(request, metadata=self._metadata + trace, timeout=timeout_s, **extra)

    async def wait_ready(self, *, interval_s: float = 0.2, timeout_s: float | None = None) -> None:
        """Wait until the app answers gRPC (HealthCheck; UNIMPLEMENTED also proves it is up)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            try:
                await self.call(self.health.HealthCheck, empty_pb2.Empty(), timeout_s=2.0)
                return
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return
                if deadline is not None and loop.time() > deadline:
                    raise TimeoutError(f"app at {self.target} did not answer gRPC: {err.details()}") from err
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        await self._channel.close()
