"""The gRPC Dapr API server (dapr.proto.runtime.v1.Dapr) of the capability service.

`start_grpc(runtime, port)` binds a grpc.aio server (behind Envoy's HTTP/2 listener on 50001), and, when the
app speaks gRPC (APP_PROTOCOL=grpc), starts AppCallback delivery. It returns an async stop callable.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import grpc

from capabilities.api.grpc.servicer import DaprApi
from capabilities.api.grpc.wire import add_dapr_service

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
STOP_GRACE_S = 2.0


def _setting(runtime: Runtime, name: str, env: str, default: Any) -> Any:
    """Read a Runtime.settings field, falling back to the environment (daprd's flags are env here too)."""
    value = getattr(getattr(runtime, "settings", None), name, None)
    if value in (None, ""):
        value = os.environ.get(env, default)
    return value


def app_protocol(runtime: Runtime) -> str:
    return str(_setting(runtime, "app_protocol", "APP_PROTOCOL", "http")).lower()


class GrpcServerHandle:
    """Awaiting the handle stops the server; `port` is the bound port (useful with port 0)."""

    def __init__(self, server: grpc.aio.Server, api: DaprApi, port: int, delivery_stop: Any) -> None:
        self.server = server
        self.api = api
        self.port = port
        self._delivery_stop = delivery_stop
        self._stopped = False

    async def __call__(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._delivery_stop is not None:
            await self._delivery_stop()
        await self.api.close()  # ends streams: subscriptions and config watches are released
        await self.server.stop(STOP_GRACE_S)


async def start_grpc(
    runtime: Runtime, port: int, *, host: str | None = None, protocol: str | None = None
) -> GrpcServerHandle:
    """Serve the Dapr gRPC API on host:port (port 0 = any free port; see handle.port).

    `protocol` overrides APP_PROTOCOL (http | grpc): with grpc, events reach the app through AppCallback.
    """
    protocol = (protocol or app_protocol(runtime)).lower()
    host = host or str(_setting(runtime, "http_host", "MECHA_GRPC_HOST", "127.0.0.1"))
    max_bytes = int(_setting(runtime, "max_body_bytes", "MECHA_MAX_BODY_BYTES", DEFAULT_MAX_BYTES))
    token = str(_setting(runtime, "api_token", "DAPR_API_TOKEN", "") or "")
    server = grpc.aio.server(
        options=[
            # Same limit as the HTTP API's body limit (daprd: --max-body-size applies to both).
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    api = DaprApi(runtime)
    api.app_protocol = protocol
    add_dapr_service(server, api, token=token)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio's way of saying the address is taken or invalid
        bound = 0
    if bound == 0:
        raise OSError(f"gRPC API: cannot bind {host}:{port} (DAPR_GRPC_PORT): address in use or invalid")
    await server.start()
    delivery_stop = None
    if protocol == "grpc":
        from capabilities.delivery.grpc import start as start_delivery

        try:
            delivery_stop = await start_delivery(runtime)
        except BaseException:
            await server.stop(0)
            raise
    log.info("Dapr gRPC API listening on %s:%d (app protocol %s)", host, bound, protocol)
    return GrpcServerHandle(server, api, bound, delivery_stop)
