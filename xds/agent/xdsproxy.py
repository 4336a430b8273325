"""Envoy's ADS stream, from a local Unix socket to the control plane over TLS with the credential added.

Raw bytes both ways (grpc generic handlers, no decoding): the control plane checks the credential against
the node in the first request; its refusal status reaches Envoy unchanged.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from xds.agent.channel import CredentialSource
from xds.agent.node import DELTA_NODE, SOTW_NODE, NodeRewrite, rewritten
from xds.identity.credential import CredentialError
from xds.server.services import ADS_SERVICE, KEEPALIVE_SERVER_OPTIONS, SERVICES

log = logging.getLogger(__name__)
# Tests only: append every response the control plane sends to <dir>/<proxy id>.xds (4-byte big-endian
# length, then the raw DiscoveryResponse), so a test can prove what crossed the network; the files are 0600.
ENV_RECORD_DIR = "MECHA_AGENT_RECORD_DIR"
# Envoy pings its agent as it would the control plane (connection_keepalive in the agent-mode bootstrap, so a
# frozen agent is noticed): the same ping policy accepts it, and the agent's own pings free a frozen Envoy's
# upstream stream.
AGENT_SERVER_OPTIONS = KEEPALIVE_SERVER_OPTIONS


class ResponseRecorder:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._out = os.fdopen(fd, "ab", buffering=0)

    def write(self, response: bytes) -> None:
        self._out.write(struct.pack(">I", len(response)) + response)

    @classmethod
    def from_env(cls, proxy_id: str) -> ResponseRecorder | None:
        folder = os.environ.get(ENV_RECORD_DIR, "")
        return cls(Path(folder) / f"{proxy_id}.xds") if folder else None


def read_recording(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at + 4 <= len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


class XdsProxy:
    def __init__(
        self,
        upstream: grpc.aio.Channel,
        credential: CredentialSource,
        proxy_id: str = "",
        rewrite: NodeRewrite | None = None,
    ) -> None:
        self.upstream = upstream
        self.credential = credential
        self.rewrite = rewrite  # an instance credential's node id and address (xds/agent/node.py)
        self._server: grpc.aio.Server | None = None
        self._recorder = ResponseRecorder.from_env(proxy_id or "proxy")

    def _handler(self, method: str) -> grpc.RpcMethodHandler:
        call = self.upstream.stream_stream(f"/{ADS_SERVICE}/{method}")

        async def forward(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
            try:
                metadata = self.credential.metadata()
            except CredentialError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"mecha agent: {exc}")
            if self.rewrite is not None:
                node_field = DELTA_NODE if method.startswith("Delta") else SOTW_NODE
                requests = rewritten(requests, node_field, self.rewrite)
            upstream = call(requests, metadata=metadata)
            try:
                async for response in upstream:
                    if self._recorder is not None:
                        self._recorder.write(response)
                    yield response
            except grpc.aio.AioRpcError as exc:
                # The control plane's refusal, or its connection lost (keepalive: dead or frozen), passed on
                # as it is: Envoy opens a new stream, which this channel takes to a live replica if any.
                log.warning("xDS stream to the control plane ended: %s: %s", exc.code().name, exc.details())
                await context.abort(exc.code(), exc.details() or "")
            finally:
                upstream.cancel()

        return grpc.stream_stream_rpc_method_handler(forward)

    async def start(self, socket_path: str) -> None:
        sotw, delta, _ = SERVICES[ADS_SERVICE]
        server = grpc.aio.server(options=AGENT_SERVER_OPTIONS)
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
