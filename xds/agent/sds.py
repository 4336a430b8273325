"""SDS for the local Envoy over a Unix socket: `default` (chain + key) and `ROOTCA`, from a one-proxy snapshot
that rotation replaces.

No generated Envoy protos on this path (they are ~0.5 s of imports, and Envoy waits for this socket): the
Secrets are encoded by the control plane's hand-written codec, the streams run on its pure protocol states
(xds/server/sotw.py, delta.py: nonces, versions, ACK/NACK), and the node is read as raw bytes (its id only:
the control plane's XdsServer would parse the whole Node with betterproto2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from xds import types
from xds.agent.certs import WorkloadCert
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import (
    CodecError,
    decode_delta_request,
    decode_sotw_request,
    encode_tls_certificate_secret,
    encode_validation_context_secret,
    string_field,
)
from xds.server.delta import DeltaStreamState
from xds.server.sotw import SotwStreamState
from xds.server.state import Action, Nack, ProtocolError, Send, clip

log = logging.getLogger(__name__)
# The names the control plane's translator references (xds/ca/workload.py; a test checks they agree).
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
NODE_ID = 1  # envoy.config.core.v3.Node.id


def secrets_snapshot(cert: WorkloadCert) -> Snapshot:
    workload = encode_tls_certificate_secret(WORKLOAD_SECRET, cert.chain_pem, cert.key_pem)
    root = encode_validation_context_secret(ROOT_SECRET, cert.root_pem)
    return Snapshot.build(
        [
            Resource.make(types.SECRET, WORKLOAD_SECRET, workload),
            Resource.make(types.SECRET, ROOT_SECRET, root),
        ]
    )


class SdsServer:
    """SecretDiscoveryService (SotW and delta) for the one proxy id Envoy's bootstrap names."""

    def __init__(self, proxy_id: str) -> None:
        self.proxy_id = proxy_id
        self.snapshot: Snapshot | None = None
        # Kept while no stream is open: an Envoy that reconnects (or restarts) gets the secrets at once.
        self._changed: asyncio.Future[None] | None = None
        self._server: grpc.aio.Server | None = None

    def publish(self, cert: WorkloadCert) -> None:
        self.snapshot = secrets_snapshot(cert)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def _next_change(self) -> asyncio.Future[None]:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def start(self, socket_path: str) -> None:
        server = grpc.aio.server(options=[("grpc.max_send_message_length", -1)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SDS_SERVICE,
                    {
                        "StreamSecrets": self._method(delta=False),
                        "DeltaSecrets": self._method(delta=True),
                    },
                ),
            )
        )
        if server.add_insecure_port(f"unix:{socket_path}") == 0:
            raise OSError(f"mecha agent: cannot listen on unix:{socket_path}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.2)
            self._server = None

    def _method(self, delta: bool) -> grpc.RpcMethodHandler:
        async def handler(requests: Any, context: grpc.aio.ServicerContext) -> None:
            await self._serve(context, delta)

        return grpc.stream_stream_rpc_method_handler(handler)  # raw bytes both ways

    async def _serve(self, context: grpc.aio.ServicerContext, delta: bool) -> None:
        where = "DeltaDiscoveryRequest" if delta else "DiscoveryRequest"
        decode: Callable[[bytes], Any] = decode_delta_request if delta else decode_sotw_request
        raw = await context.read()
        if raw is grpc.aio.EOF:
            return
        try:
            first = decode(raw)
            if not first.node:
                raise ProtocolError(f"{where}.node: the first request of a stream must carry the node")
            node_id = string_field(first.node, NODE_ID)
            state = DeltaStreamState(False, types.SECRET) if delta else SotwStreamState(False, types.SECRET)
            state._resolve_type(first.type_url, where)
        except (CodecError, ProtocolError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        if node_id != self.proxy_id:  # only Envoy's user reaches the socket: a wrong bootstrap, not an attack
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"mecha agent: secrets are for proxy {self.proxy_id!r}, not {clip(node_id, 200)!r}",
            )
            return
        read: asyncio.Future[Any] | None = None
        try:
            if self.snapshot is not None:
                await self._apply(context, state.set_snapshot(self.snapshot))
            await self._apply(context, state.handle_request(first))
            read = asyncio.ensure_future(context.read())
            while True:
                change = self._next_change()
                if self.snapshot is not None and self.snapshot is not state.snapshot:
                    await self._apply(context, state.set_snapshot(self.snapshot))
                    continue
                await asyncio.wait((read, change), return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    raw = read.result()
                    if raw is grpc.aio.EOF:
                        break
                    await self._apply(context, state.handle_request(decode(raw)))
                    read = asyncio.ensure_future(context.read())
        except (CodecError, ProtocolError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            log.info("SDS stream of %s ended: %s", self.proxy_id, exc)
        finally:
            if read is not None and not read.done():
                read.cancel()

    async def _apply(self, context: grpc.aio.ServicerContext, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await context.write(action.payload)
            elif isinstance(action, Nack):
                log.warning("Envoy %s NACKed secrets version %s: %s", self.proxy_id, action.version,
                            action.message)  # fmt: skip
