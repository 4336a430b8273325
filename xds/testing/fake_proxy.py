"""A protocol-level fake Envoy: one grpc.aio ADS stream (SotW or delta) that behaves like Envoy does.

It subscribes wildcard CDS and LDS, then EDS for the clusters it received and RDS for the route names of its
listeners (decoded with envoy_data_plane, memoized, or given by the caller), ACKs every response (or NACKs
when `nack_if` says so) and records when it ACKed each (type, version): `await proxy.wait_acked(t, v)`.
Used beside real Envoys for load (benchmarks) and to test the server without spawning processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc

from xds import types
from xds.server.codec import (
    DecodedResponse,
    DeltaRequest,
    ErrorDetail,
    SotwRequest,
    decode_delta_response,
    decode_sotw_response,
    encode_delta_request,
    encode_names,
    encode_sotw_request,
    first_string_field,
    string_field,
)

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
NackPolicy = Callable[[str, DecodedResponse], "str | None"]  # (type_url, response) -> NACK message or None


def node_bytes(proxy_id: str, metadata: Mapping[str, Any] | None = None, cluster: str = "fake") -> bytes:
    """Serialized envoy.config.core.v3.Node with metadata under "mecha" (as the bootstrap template does)."""
    from envoy_data_plane.envoy.config.core import v3 as core
    from envoy_data_plane.google.protobuf import Struct

    meta = Struct.from_dict({"mecha": dict(metadata or {})})
    return bytes(core.Node(id=proxy_id, cluster=cluster, metadata=meta, user_agent_name="mecha-fake-proxy"))


@functools.lru_cache(maxsize=4096)
def route_names_of_listener(body: bytes) -> tuple[str, ...]:
    """RDS route_config_names referenced by a Listener's HttpConnectionManagers."""
    from envoy_data_plane.envoy.config.listener import v3 as lis
    from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm

    listener = lis.Listener.parse(body)
    names = []
    for chain in [
        *listener.filter_chains,
        *([listener.default_filter_chain] if listener.default_filter_chain else []),
    ]:
        for flt in chain.filters:
            cfg = flt.typed_config
            if cfg is not None and cfg.type_url.endswith("HttpConnectionManager"):
                mgr = hcm.HttpConnectionManager.parse(cfg.value)
                if mgr.rds is not None and mgr.rds.route_config_name:
                    names.append(mgr.rds.route_config_name)
    return tuple(sorted(set(names)))


def listener_uses_scopes(body: bytes) -> bool:
    """Whether a Listener's HttpConnectionManager routes by SRDS scopes (cheap byte test: the Any of the
    HCM holds the scoped_routes name; decoding every listener of every fake proxy is too slow for load)."""
    return _scoped_marker() in body


@functools.cache
def _scoped_marker() -> bytes:
    from xds.translate.scoped_routes import scoped_routes_bytes

    return scoped_routes_bytes()


def scope_route_name(body: bytes) -> str:
    """ScopedRouteConfiguration.route_configuration_name (field 2)."""
    return string_field(body, 2)


_DECODED: OrderedDict[tuple[bool, bytes], DecodedResponse] = OrderedDict()


def _decode(raw: bytes, delta: bool) -> DecodedResponse:
    """Decoded once per process for identical large payloads (every new proxy with the same view gets the
    same first responses, nonce included): a load generator of hundreds of proxies then spends its CPU on
    the protocol, not on re-parsing the same bytes. The result is shared: read, never changed."""
    if len(raw) < 65536:
        return decode_delta_response(raw) if delta else decode_sotw_response(raw)
    key = (delta, raw)
    found = _DECODED.get(key)
    if found is None:
        found = _DECODED[key] = decode_delta_response(raw) if delta else decode_sotw_response(raw)
        while len(_DECODED) > 8:
            _DECODED.popitem(last=False)
    return found


class FakeProxy:
    """A fake Envoy on one ADS stream. Call start(), then wait_acked(); stop() when done."""

    def __init__(
        self,
        target: str,
        proxy_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        delta: bool = False,
        nack_if: NackPolicy | None = None,
        route_names: Callable[[Iterable[bytes]], Iterable[str]] | None = None,
        channel: grpc.aio.Channel | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        call_metadata: Iterable[tuple[str, str]] = (),
        own_connection: bool = False,
        keep_bodies: bool = True,
    ) -> None:
        """channel_credentials: TLS to the server (with SERVER_NAME as the name checked, as agents do);
        call_metadata: sent on the stream (the workload credential: ("authorization", "Bearer ...")).
        own_connection: this proxy's channel gets its own TCP (and TLS) connection, as a real proxy has;
        by default gRPC lets channels of one process to the same target share one connection.
        keep_bodies=False: keep only the bodies it reads itself (listeners, scoped routes), for load tests."""
        self.keep_bodies = keep_bodies
        self.target = target
        self.channel_credentials = channel_credentials
        self.call_metadata = tuple(call_metadata)
        self.own_connection = own_connection
        self.proxy_id = proxy_id
        self.metadata = dict(metadata or {})
        self.delta = delta
        self.nack_if = nack_if
        self._route_names = route_names
        self._own_channel = channel is None
        self._channel = channel
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self.resources: dict[str, dict[str, bytes]] = {t: {} for t in types.TYPE_ORDER}
        self.versions: dict[str, str] = {}  # type -> last ACKed version
        self.nonces: dict[str, str] = {}
        self.names: dict[str, set[str]] = {types.ENDPOINT: set(), types.ROUTE: set()}
        self.ack_times: dict[tuple[str, str], float] = {}
        self.nacks: list[tuple[str, str, str]] = []  # (type, version, message)
        self.responses = 0
        self.closed: asyncio.Future[grpc.StatusCode | None] | None = None
        self._waiters: dict[tuple[str, str], list[asyncio.Future[float]]] = {}
        self._sent_node = False
        self._names_blobs: dict[str, tuple[frozenset[str], bytes]] = {}

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the stream and subscribe CDS (wildcard); LDS follows the first CDS response, like Envoy."""
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        if self._channel is None:
            self._channel = self._open_channel()
        method = "DeltaAggregatedResources" if self.delta else "StreamAggregatedResources"
        self._call = self._channel.stream_stream(ADS + method)(metadata=self.call_metadata or None)
        await self._request(types.CLUSTER)
        self._reader = loop.create_task(self._read_loop(), name=f"fake-proxy-{self.proxy_id}")

    def _open_channel(self) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = []
        if self.own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        if self.channel_credentials is None:
            return grpc.aio.insecure_channel(self.target, options=options)
        from xds.agent.channel import SERVER_NAME

        options.append(("grpc.ssl_target_name_override", SERVER_NAME))
        return grpc.aio.secure_channel(self.target, self.channel_credentials, options=options)

    async def stop(self) -> None:
        """Cancel the stream (and close the channel if this proxy opened it)."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._own_channel and self._channel is not None:
            await self._channel.close()

    async def wait_acked(self, type_url: str, version: str, timeout: float = 10.0) -> float:  # noqa: ASYNC109
        """Wait until this proxy ACKed `version` of `type_url`; returns time.monotonic() of that ACK."""
        key = (type_url, version)
        if key in self.ack_times:
            return self.ack_times[key]
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        return await asyncio.wait_for(fut, timeout)

    async def wait_nacked(self, type_url: str, timeout: float = 10.0) -> tuple[str, str, str]:  # noqa: ASYNC109
        """Wait for the first NACK this proxy sent for type_url."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for nack in self.nacks:
                if nack[0] == type_url:
                    return nack
            await asyncio.sleep(0.01)
        raise TimeoutError(f"{self.proxy_id}: no NACK for {type_url}")

    # ---------------------------------------------------------------- protocol

    def _node(self) -> bytes | None:
        if self._sent_node:
            return None
        self._sent_node = True
        return node_bytes(self.proxy_id, self.metadata)

    async def _send(self, payload: bytes) -> None:
        async with self._send_lock:
            await self._call.write(payload)

    async def _request(
        self,
        type_url: str,
        nonce: str = "",
        error: str | None = None,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
    ) -> None:
        detail = ErrorDetail(13, error) if error is not None else None
        if self.delta:
            req = DeltaRequest(
                node=self._node(),
                type_url=type_url,
                subscribe=list(subscribe),
                unsubscribe=list(unsubscribe),
                response_nonce=nonce,
                error_detail=detail,
            )
            await self._send(encode_delta_request(req))
        else:
            wanted = self.names.get(type_url, set())
            cached = self._names_blobs.get(type_url)
            if cached is None or cached[0] != wanted:  # Envoy repeats every name in each request
                cached = self._names_blobs[type_url] = (frozenset(wanted), encode_names(sorted(wanted)))
            sreq = SotwRequest(
                version_info=self.versions.get(type_url, ""),
                node=self._node(),
                type_url=type_url,
                response_nonce=nonce,
                error_detail=detail,
            )
            await self._send(encode_sotw_request(sreq, cached[1]))

    async def _read_loop(self) -> None:
        assert self.closed is not None
        try:
            while True:
                raw = await self._call.read()
                if raw is grpc.aio.EOF:
                    break
                await self._on_response(_decode(raw, self.delta))
            code = await self._call.code()
            if not self.closed.done():
                self.closed.set_result(code)
        except asyncio.CancelledError:
            if not self.closed.done():
                self.closed.set_result(None)
            raise
        except grpc.aio.AioRpcError as exc:
            if not self.closed.done():
                self.closed.set_result(exc.code())

    async def _on_response(self, resp: DecodedResponse) -> None:
        self.responses += 1
        t = resp.type_url
        message = self.nack_if(t, resp) if self.nack_if else None
        if message is not None:
            self.nacks.append((t, resp.version_info, message))
            await self._request(t, resp.nonce, error=message)
            return
        held = self.resources.setdefault(t, {})
        if self.delta:
            keep = self.keep_bodies or t in (types.LISTENER, types.SCOPED_ROUTE)
            for res in resp.resources:
                held[res.name] = res.body if keep else b""
            for name in resp.removed:
                held.pop(name, None)
        elif t in types.WILDCARD_TYPES:
            held.clear()
            held.update((first_string_field(r.body), r.body) for r in resp.resources)
        else:
            held.update((first_string_field(r.body), r.body) for r in resp.resources)
        if t == types.LISTENER:
            await self._maybe_subscribe_scopes()
        child_type, wanted = self._children(t, held)
        if child_type is not None:
            await self._resubscribe(child_type, wanted)  # Envoy asks for children before ACKing the parent
        self.versions[t] = resp.version_info
        self.nonces[t] = resp.nonce
        await self._request(t, resp.nonce)
        self._record_ack(t, resp.version_info)
        if t == types.CLUSTER and types.LISTENER not in self.nonces and not self._asked_lds:
            self._asked_lds = True
            await self._request(types.LISTENER)

    _asked_lds = False

    def _children(self, t: str, held: dict[str, bytes]) -> tuple[str | None, set[str]]:
        if t == types.CLUSTER:
            return types.ENDPOINT, set(held)
        if t in (types.LISTENER, types.SCOPED_ROUTE):
            listeners = self.resources[types.LISTENER].values()
            if self._route_names is not None:
                names = set(self._route_names(listeners))
            else:
                names = {n for body in listeners for n in route_names_of_listener(body)}
            # route tables named by scopes (SRDS, wildcard), like Envoy's scoped_routes
            names |= {scope_route_name(b) for b in self.resources[types.SCOPED_ROUTE].values()}
            return types.ROUTE, names
        return None, set()

    async def _maybe_subscribe_scopes(self) -> None:
        if self._asked_srds or not any(map(listener_uses_scopes, self.resources[types.LISTENER].values())):
            return
        self._asked_srds = True
        await self._request(types.SCOPED_ROUTE)

    _asked_srds = False

    async def _resubscribe(self, child: str, wanted: set[str]) -> None:
        current = self.names[child]
        if wanted == current:
            return
        added, removed = wanted - current, current - wanted
        self.names[child] = set(wanted)
        for name in removed:
            self.resources[child].pop(name, None)
        if self.delta:
            await self._request(child, subscribe=sorted(added), unsubscribe=sorted(removed))
        else:
            await self._request(child, self.nonces.get(child, ""))

    def _record_ack(self, t: str, version: str) -> None:
        now = time.monotonic()
        key = (t, version)
        self.ack_times.setdefault(key, now)
        for fut in self._waiters.pop(key, []):
            if not fut.done():
                fut.set_result(now)
