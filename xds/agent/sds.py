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
from xds.ca.secrets import root_secret, workload_secret
from xds.cache.snapshot import Snapshot
from xds.server.codec import (
    CodecError,
    decode_delta_request,
    decode_sotw_request,
    string_field,
)
from xds.server.delta import DeltaStreamState
from xds.server.sotw import SotwStreamState
from xds.server.state import Action, Nack, ProtocolError, Send
from xds.server.stream import pump, status_message

log = logging.getLogger(__name__)
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
NODE_ID = 1  # envoy.config.core.v3.Node.id


def secrets_snapshot(cert: WorkloadCert) -> Snapshot:
    return Snapshot.build([workload_secret(cert.chain_pem, cert.key_pem), root_secret(cert.root_pem)])


class SdsServer:
    """SecretDiscoveryService (SotW and delta) for the one proxy id Envoy's bootstrap names."""

    def __init__(self, proxy_id: str) -> None:
        self.proxy_id = proxy_id
        # Kept while no stream is open: an Envoy that reconnects (or restarts) gets the secrets at once.
        self.snapshot: Snapshot | None = None
        self._waiters: set[asyncio.Future[Snapshot]] = set()
        self._server: grpc.aio.Server | None = None
        self._closing: asyncio.Event | None = None  # set by stop(): open streams end before the server does

    def publish(self, cert: WorkloadCert) -> None:
        self.snapshot = secrets_snapshot(cert)
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(self.snapshot)

    def next_snapshot(self, held: Snapshot | None) -> asyncio.Future[Snapshot]:
        """Resolved with the secrets once they are not `held` (at once if they differ); cancel to let go."""
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        if self.snapshot is not None and self.snapshot is not held:
            future.set_result(self.snapshot)
            return future
        self._waiters.add(future)
        future.add_done_callback(self._waiters.discard)
        return future

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
        self._closing = asyncio.Event()
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            assert self._closing is not None
            self._closing.set()
            await self._server.stop(0.2)
            self._server = None

    def _method(self, delta: bool) -> grpc.RpcMethodHandler:
        async def handler(requests: Any, context: grpc.aio.ServicerContext) -> None:
            # A stream still open when the agent stops ends here, normally: left to the server's stop, gRPC
            # cancels it and logs an unhandled CancelledError with a traceback per stream.
            assert self._closing is not None
            serving = asyncio.ensure_future(self._serve(context, delta))
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait((serving, closing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                if not serving.done():
                    serving.cancel()
                    await asyncio.gather(serving, return_exceptions=True)
            if not serving.cancelled():
                serving.result()  # its refusal (context.abort) or error, as before

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
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, status_message(str(exc)))
            return
        if node_id != self.proxy_id:  # only Envoy's user reaches the socket: a wrong bootstrap, not an attack
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                status_message(f"mecha agent: secrets are for proxy {self.proxy_id!r}, not {node_id!r}"),
            )
            return

        async def apply(actions: list[Action]) -> None:
            for action in actions:
                if isinstance(action, Send):
                    await context.write(action.payload)
                elif isinstance(action, Nack):
                    log.warning("Envoy %s NACKed secrets version %s: %s", self.proxy_id, action.version,
                                action.message)  # fmt: skip

        try:
            await pump(context, state, first, decode, self.snapshot, self.next_snapshot, apply)
        except (CodecError, ProtocolError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, status_message(str(exc)))
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            log.info("SDS stream of %s ended: %s", self.proxy_id, exc)
