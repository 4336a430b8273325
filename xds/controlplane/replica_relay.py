"""Replicas answer proxy-config for each other's proxies (issue #13: any replica answers for the whole fleet).

An agent's admin relay stream (adminrelay.py) is held by one replica. A replica asked for the admin of a proxy
whose relay another replica holds forwards the read to it, at the address that replica's heartbeat row gives
(the fleet view of `mecha proxy-status`: its xDS port). That port serves TLS with the mesh CA's certificate,
checked here as the agents check it (SERVER_NAME). The call carries the operator's API token, which replicas
share (`mecha keys init`, docs/operations.md "Replicas on PostgreSQL"); the receiving replica compares it with
its own api-token file and refuses anything else, a workload credential included. It answers only from a
relay stream it holds itself (it never forwards again), and only GETs, which the agent restricts further to
read-only admin paths.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc

from xds.agent.channel import SERVER_NAME
from xds.controlplane.adminrelay import AdminRelays, RelayError
from xds.identity.authenticator import metadata_dict

log = logging.getLogger("mecha.adminrelay")

SERVICE = "mecha.controlplane.v1.ReplicaAdminRelay"
METHOD_NAME = "Get"
METHOD = f"/{SERVICE}/{METHOD_NAME}"
MAX_TIMEOUT_S = 30.0  # what a forwarded read may ask the agent for at most
FORWARD_MARGIN_S = 2.0  # the call's deadline beyond the agent's answer time: the hop and the TLS handshake


class NotHeld(RelayError):
    """The asked replica holds no relay stream of that proxy."""


class ReplicaRelay:
    """Both sides: the method other replicas call (handler) and the call to another replica (get)."""

    def __init__(
        self, relays: AdminRelays, api_token: Callable[[], str | None], trust: Callable[[], bytes]
    ) -> None:
        """api_token: this replica's operator token (read on each use: a rotated file takes effect at once);
        trust: the mesh CA bundle the other replicas' serving certificates chain to."""
        self.relays = relays
        self._api_token = api_token
        self._trust = trust
        self._channels: dict[str, tuple[bytes, grpc.aio.Channel]] = {}  # address -> (bundle, channel)

    # ---- the replica holding the relay ------------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_unary_rpc_method_handler(self._serve)  # raw bytes both ways (JSON)
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD_NAME: method})

    def _authorized(self, metadata: dict[str, str]) -> bool:
        expected = self._api_token()
        scheme, _, presented = metadata.get("authorization", "").partition(" ")
        if not expected or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), expected.encode())

    async def _serve(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if not self._authorized(metadata_dict(context.invocation_metadata())):
            log.warning("replica admin read from %s refused: not the replicas' API token", context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the replicas' API token is required")
        try:
            ask = json.loads(request)
            proxy_id, path = str(ask["proxy_id"]), str(ask["path"])
            timeout_s = min(float(ask.get("timeout_s", 5.0)), MAX_TIMEOUT_S)
        except (ValueError, TypeError, KeyError):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, 'expected {"proxy_id", "path", "timeout_s"}'
            )
        if not self.relays.connected(proxy_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no admin relay of proxy {proxy_id!r} here")
        try:
            status, body = await self.relays.get(proxy_id, path, timeout_s)
        except RelayError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return json.dumps({"status": status, "body": body}).encode()

    # ---- the replica asked ---------------------------------------------------------------------------------
    async def _channel(self, address: str) -> grpc.aio.Channel:
        bundle = self._trust()
        cached = self._channels.get(address)
        if cached is not None and cached[0] == bundle:
            return cached[1]
        creds = grpc.ssl_channel_credentials(root_certificates=bundle)
        options = [("grpc.ssl_target_name_override", SERVER_NAME), ("grpc.max_receive_message_length", -1)]
        channel = grpc.aio.secure_channel(address, creds, options=options)
        self._channels[address] = (bundle, channel)  # before any await: concurrent reads share it
        if cached is not None:  # the CA bundle changed (a plug-in CA reload): the old channel goes
            await cached[1].close(grace=None)
        return channel

    async def get(self, address: str, proxy_id: str, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        """(status, body) of GET <path> on the proxy's Envoy admin, through the replica at `address` and its
        agent. NotHeld: that replica holds no relay of the proxy; RelayError: it could not be asked."""
        token = self._api_token()
        if not token:
            raise RelayError("this replica has no API token (api-token in its state folder) to ask another")
        ask = json.dumps({"proxy_id": proxy_id, "path": path, "timeout_s": timeout_s}).encode()
        call: Any = (await self._channel(address)).unary_unary(METHOD)
        try:
            raw = await call(
                ask, metadata=(("authorization", f"Bearer {token}"),), timeout=timeout_s + FORWARD_MARGIN_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotHeld(f"replica {address}: {exc.details()}") from None
            raise RelayError(f"replica {address}: {exc.code().name}: {exc.details()}") from None
        try:
            answer = json.loads(raw)
            return int(answer["status"]), str(answer["body"])
        except (ValueError, TypeError, KeyError):
            raise RelayError(f"replica {address}: malformed answer") from None

    async def retain(self, addresses: set[str]) -> None:
        """Close the channels to replicas no longer in the fleet (a replaced pod's old address)."""
        for address in [a for a in self._channels if a not in addresses]:
            gone = self._channels.pop(address, None)  # None: a concurrent call closed it already
            if gone is not None:
                await gone[1].close(grace=None)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for _bundle, channel in channels.values():
            await channel.close(grace=None)
