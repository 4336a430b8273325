"""Envoy's ADS stream, from a local Unix socket to the control plane over TLS with the credential added.

Raw bytes both ways (grpc generic handlers, no decoding): the control plane checks the credential against
the node in the first request; its refusal status reaches Envoy unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from xds.agent.channel import CredentialSource
from xds.identity.credential import CredentialError
from xds.server.server import ADS_SERVICE, SERVICES

log = logging.getLogger(__name__)


class XdsProxy:
    def __init__(self, upstream: grpc.aio.Channel, credential: CredentialSource) -> None:
        self.upstream = upstream
        self.credential = credential
        self._server: grpc.aio.Server | None = None

    def _handler(self, method: str) -> grpc.RpcMethodHandler:
        call = self.upstream.stream_stream(f"/{ADS_SERVICE}/{method}")

        async def forward(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            try:
                metadata = self.credential.metadata()
            except CredentialError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"mecha agent: {exc}")
            upstream = call(requests, metadata=metadata)
            try:
                async for response in upstream:
                    yield response
            except grpc.aio.AioRpcError as exc:  # the control plane's refusal, passed on as it is
                log.warning("xDS stream ended by the control plane: %s: %s", exc.code().name, exc.details())
                await context.abort(exc.code(), exc.details() or "")
            finally:
                upstream.cancel()

        return grpc.stream_stream_rpc_method_handler(forward)

    async def start(self, socket_path: str) -> None:
        sotw, delta, _ = SERVICES[ADS_SERVICE]
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            ADS_SERVICE, {sotw: self._handler(sotw), delta: self._handler(delta)}
        )
        server.add_generic_rpc_handlers((handler,))
        if server.add_insecure_port(f"unix:{socket_path}") == 0:
            raise OSError(f"mecha agent: cannot listen on unix:{socket_path}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.2)
            self._server = None
