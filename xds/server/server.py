"""grpc.aio xDS server: ADS and per-type services, SotW and delta, over the pure stream states.

Generic handlers with raw bytes in and out: requests are decoded by xds.server.codec (the Node with
betterproto2 only once per stream), responses are assembled from pre-serialized resources. Each stream
handler only awaits receive, send and its cache watch; every protocol decision is made by the pure state.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from xds import metrics, types
from xds.cache.snapshot import Snapshot
from xds.identity.authenticator import Authenticator, AuthError, metadata_dict
from xds.proxy import ProxyIdentity, ProxyIdentityError
from xds.server.codec import CodecError, decode_delta_request, decode_sotw_request
from xds.server.delta import DeltaStreamState
from xds.server.push import DEFAULT_MAX_CONCURRENT_PUSHES, PushThrottle
from xds.server.services import KEEPALIVE_SERVER_OPTIONS, SERVICES
from xds.server.sotw import SotwStreamState
from xds.server.state import (
    Ack,
    Action,
    Converged,
    Nack,
    ProtocolError,
    Send,
    TypeStatus,
)
from xds.server.status import ProxyStatus
from xds.server.stream import pump, status_message

if TYPE_CHECKING:
    from xds.cache.watcher import ConfigWatcher

log = logging.getLogger(__name__)


def identity_from_node(node_bytes: bytes | None, where: str) -> ProxyIdentity:
    """Parse the raw Node of a first request into a ProxyIdentity; ProtocolError names the field."""
    if not node_bytes:
        raise ProtocolError(f"{where}.node: the first request of a stream must carry the node")
    from envoy_data_plane.envoy.config.core.v3 import Node  # heavy import: only when a stream opens

    try:
        node = Node.parse(node_bytes)
        metadata = node.metadata.to_dict() if node.metadata is not None else {}
    except Exception as exc:  # betterproto2 raises several types for malformed input
        raise ProtocolError(f"{where}.node: undecodable ({exc.__class__.__name__})") from None
    try:
        return ProxyIdentity.from_node(node.id, metadata)
    except ProxyIdentityError as exc:
        raise ProtocolError(f"{where}.{exc}") from None


@dataclass(eq=False)
class _Stream:
    """One open stream: who, how, and its pure protocol state."""

    identity: ProxyIdentity
    peer: str
    connected_at: float
    state: SotwStreamState | DeltaStreamState
    transport: str
    credential: Any = None  # what the authenticator verified (None: the server runs without one)
    task: asyncio.Task[Any] | None = None  # the handler, cancelled when its credential is revoked
    closed_because: str = ""  # why close_streams ended it (sent to the client as UNAUTHENTICATED)

    @property
    def flavour(self) -> str:
        return self.state.flavour


@dataclass
class _Counters:
    streams_opened: int = 0
    streams_rejected: int = 0
    errors: list[str] = field(default_factory=list)


class XdsServer:
    """The xDS gRPC server. Reads snapshots from `cache` (any ConfigWatcher: the control plane's
    SnapshotCache); never builds configuration itself."""

    def __init__(
        self,
        cache: ConfigWatcher,
        *,
        max_concurrent_pushes: int = DEFAULT_MAX_CONCURRENT_PUSHES,
        first_snapshot_timeout: float = 5.0,
        max_receive_message_bytes: int = 16 * 1024 * 1024,
        ack_listener: Callable[[str, str, str], None] | None = None,
        keepalive_options: Sequence[tuple[str, int]] = KEEPALIVE_SERVER_OPTIONS,
        authenticator: Authenticator | None = None,
        server_credentials: grpc.ServerCredentials | None = None,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        """ack_listener(proxy_id, type_url, version) is called on every ACK (benchmarks, tests);
        keepalive_options are gRPC channel args (tests pass () to get gRPC's defaults back).
        authenticator: checks every stream's credential against its node (None: anyone may connect);
        server_credentials: TLS on the port; extra_handlers: more services on it (the CA endpoint)."""
        self.authenticator = authenticator
        self.server_credentials = server_credentials
        self.extra_handlers = tuple(extra_handlers)
        self.cache = cache
        self.ack_listener = ack_listener
        self.throttle = PushThrottle(max_concurrent_pushes)
        self.first_snapshot_timeout = first_snapshot_timeout
        self.max_receive_message_bytes = max_receive_message_bytes
        self.keepalive_options = tuple(keepalive_options)
        self.counters = _Counters()
        self._server: grpc.aio.Server | None = None
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._new_proxy_tasks: dict[str, asyncio.Task[None]] = {}
        self.port = 0

    # ---------------------------------------------------------------- lifecycle

    async def start(self, address: str) -> int:
        """Listen on address ("127.0.0.1:0" allowed); returns the bound port."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_receive_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
                *self.keepalive_options,
            ]
        )
        server.add_generic_rpc_handlers((*self._handlers(), *self.extra_handlers))
        port: int
        if self.server_credentials is not None:
            port = server.add_secure_port(address, self.server_credentials)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"xDS server: cannot bind {address}")
        await server.start()
        self._server, self.port = server, port
        log.info("xDS server listening on %s (port %d)", address, port)
        return port

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, end open streams after `grace` seconds; their state is cleaned up."""
        if self._server is None:
            return
        await self._server.stop(grace)
        self._server = None
        for task in list(self._new_proxy_tasks.values()):
            task.cancel()
        # Stream handlers clean up in their finally blocks; give cancelled ones a moment to run them.
        for _ in range(100):
            if not self._streams:
                break
            await asyncio.sleep(0.01)

    # ---------------------------------------------------------------- queries

    def proxies(self) -> list[ProxyIdentity]:
        """Identities of the proxies with at least one open stream."""
        seen: dict[str, ProxyIdentity] = {}
        for stream in self._streams.values():
            seen.setdefault(stream.identity.id, stream.identity)
        return list(seen.values())

    def connections(self) -> list[tuple[ProxyIdentity, float]]:
        """(identity, opened at) of every open stream: cheap enough to poll (auto-registration)."""
        return [(stream.identity, stream.connected_at) for stream in self._streams.values()]

    def status(self) -> list[ProxyStatus]:
        """Per connected proxy: who, how, and per type snapshot/sent/ACKed versions and NACKs."""
        grouped: dict[str, list[_Stream]] = {}
        for stream in self._streams.values():
            grouped.setdefault(stream.identity.id, []).append(stream)
        out = []
        for proxy_id, streams in sorted(grouped.items()):
            streams.sort(key=lambda s: s.connected_at)
            first = streams[0]
            by_type: dict[str, TypeStatus] = {}
            for stream in streams:
                for ts in stream.state.type_status():
                    by_type.setdefault(ts.type_url, ts)
            ordered = tuple(by_type[t] for t in types.TYPE_ORDER if t in by_type)
            snapshot = self.cache.get(proxy_id)
            out.append(
                ProxyStatus(
                    proxy_id=proxy_id,
                    identity=first.identity,
                    mode=str(first.identity.mode),
                    peer=first.peer,
                    connected_at=first.connected_at,
                    flavour=first.flavour,
                    transport=first.transport,
                    config_version=snapshot.config_version if snapshot else "",
                    types=ordered,
                )
            )
        return out

    # ---------------------------------------------------------------- gRPC plumbing

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for service, (sotw_method, delta_method, type_url) in SERVICES.items():
            methods = {
                sotw_method: self._method(delta=False, type_url=type_url),
                delta_method: self._method(delta=True, type_url=type_url),
            }
            handlers.append(grpc.method_handlers_generic_handler(service, methods))
        return handlers

    def _method(self, delta: bool, type_url: str | None) -> grpc.RpcMethodHandler:
        async def handler(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
            await self._serve(context, delta, type_url)

        # No (de)serializers: raw bytes in and out (hand-written codec).
        return grpc.stream_stream_rpc_method_handler(handler)

    async def _serve(self, context: grpc.aio.ServicerContext, delta: bool, type_url: str | None) -> None:
        where = "DeltaDiscoveryRequest" if delta else "DiscoveryRequest"
        decode: Callable[[bytes], Any] = decode_delta_request if delta else decode_sotw_request
        peer = context.peer() or "unknown"
        try:
            raw = await context.read()
            if raw is grpc.aio.EOF:
                return
            first = decode(raw)
            identity = identity_from_node(first.node, where)
            state = (
                DeltaStreamState(type_url is None, type_url)
                if delta
                else SotwStreamState(type_url is None, type_url)
            )
            state._resolve_type(first.type_url, where)  # reject a bad first type before registering
            credential = self._authenticate(context, identity)
            if credential is not None:  # the translator trusts the credential's accounts, not the node
                identity = identity.with_service_accounts(credential.service_accounts)
        except (CodecError, ProtocolError) as exc:
            await self._reject(context, peer, str(exc))
            return
        except AuthError as exc:
            await self._reject(context, peer, exc.message, identity.id, exc.code)
            return
        stream = _Stream(identity, peer, time.time(), state, "ads" if type_url is None else "per-type")
        stream.credential, stream.task = credential, asyncio.current_task()
        stream_id = next(self._ids)
        self._streams[stream_id] = stream
        self.cache.attach(identity.id)
        metrics.connected_proxies.set(len(self.proxies()))
        self.counters.streams_opened += 1
        log.info("proxy %s connected from %s (%s, %s)", identity.id, peer, state.flavour, stream.transport)
        try:
            snapshot = self.cache.get(identity.id)
            if snapshot is None:
                self._ensure_first_snapshot(identity)

            async def apply(actions: list[Action]) -> None:
                await self._apply(stream, context, actions)

            def next_snapshot(held: Snapshot | None) -> asyncio.Future[Snapshot]:
                return self.cache.next_snapshot(identity.id, held)

            await pump(context, state, first, decode, snapshot, next_snapshot, apply, self.throttle.slot)
        except (CodecError, ProtocolError) as exc:
            await self._reject(context, peer, str(exc), identity.id)
        except asyncio.CancelledError:
            if stream.closed_because:  # revoked: the client is told why, not just CANCELLED
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, stream.closed_because)
            raise
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            log.info("proxy %s stream ended: %s", identity.id, exc)
        finally:
            self._streams.pop(stream_id, None)
            self.cache.detach(identity.id)
            metrics.connected_proxies.set(len(self.proxies()))
            log.info("proxy %s disconnected (%s)", identity.id, peer)

    def _authenticate(self, context: grpc.aio.ServicerContext, identity: ProxyIdentity) -> Any:
        if self.authenticator is None:
            return None
        return self.authenticator.authenticate(metadata_dict(context.invocation_metadata()), identity)

    def close_streams(self, revoked: Callable[[Any], bool]) -> int:
        """End the open streams whose credential `revoked(credential)` says is no longer valid."""
        closed = 0
        for stream in list(self._streams.values()):
            if stream.credential is not None and stream.task is not None and revoked(stream.credential):
                log.warning("proxy %s: credential revoked, closing its stream", stream.identity.id)
                stream.closed_because = f"credential of proxy {stream.identity.id!r} revoked or expired"
                stream.task.cancel()
                closed += 1
        return closed

    async def _reject(
        self,
        context: grpc.aio.ServicerContext,
        peer: str,
        message: str,
        proxy_id: str = "",
        code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        message = status_message(message)
        self.counters.streams_rejected += 1
        self.counters.errors.append(message)
        del self.counters.errors[:-20]
        log.warning("xDS stream from %s %s rejected: %s", peer, proxy_id, message)
        await context.abort(code, message)

    async def _apply(self, stream: _Stream, context: grpc.aio.ServicerContext, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                short = types.short_name(action.type_url)
                started = time.perf_counter()
                await context.write(action.payload)
                metrics.push_time.labels(short).observe(time.perf_counter() - started)
                metrics.pushes.labels(short).inc()
            elif isinstance(action, Nack):
                short = types.short_name(action.type_url)
                metrics.nacks.labels(short).inc()
                log.warning(
                    "proxy %s NACKed %s version %s: %s",
                    stream.identity.id,
                    short,
                    action.version,
                    action.message,
                )
            elif isinstance(action, Converged):
                if action.snapshot.changed_at > 0:
                    metrics.convergence_time.observe(max(0.0, time.monotonic() - action.snapshot.changed_at))
            elif isinstance(action, Ack) and self.ack_listener is not None:
                self.ack_listener(stream.identity.id, action.type_url, action.version)

    def _ensure_first_snapshot(self, identity: ProxyIdentity) -> None:
        """Ask the control plane (once per proxy at a time) to compute the first snapshot. One that takes
        longer than first_snapshot_timeout is reported and still awaited: cancelling it left the stream
        without a snapshot until some later change (a fleet reconnecting at once on a busy control plane)."""
        callback = self.cache.on_new_proxy
        if callback is None or identity.id in self._new_proxy_tasks:
            return

        async def run(cb: Callable[[ProxyIdentity], Awaitable[None]]) -> None:
            first = asyncio.ensure_future(cb(identity))
            try:
                done, _ = await asyncio.wait({first}, timeout=self.first_snapshot_timeout)
                if not done:
                    log.warning("on_new_proxy(%s) took over %.1fs", identity.id, self.first_snapshot_timeout)
                await first
                if self.cache.get(identity.id) is None:
                    log.warning("on_new_proxy(%s) returned without setting a snapshot", identity.id)
            except Exception:
                log.exception("on_new_proxy(%s) failed", identity.id)
            finally:
                first.cancel()  # the server stops (a no-op once it finished)
                self._new_proxy_tasks.pop(identity.id, None)
                # The proxy left while its first snapshot was built: nothing would ever drop that snapshot
                # (the cache forgets a proxy when its last stream detaches, which already happened).
                if self.cache.stream_count(identity.id) == 0:
                    self.cache.remove(identity.id)

        self._new_proxy_tasks[identity.id] = asyncio.ensure_future(run(callback))
