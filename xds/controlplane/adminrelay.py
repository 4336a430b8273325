"""The control plane's side of the admin relay: read a proxy's Envoy admin through its agent's stream.

Each agent holds one AdminRelay/Serve stream on the xDS port (xds/agent/adminrelay.py). The stream is filed
under the proxy id its workload credential names (or, for scaled replicas, an instance id the credential
allows), never under anything the messages say; a stream without a valid credential, or claiming another
proxy, is refused before anything is sent on it. `get` sends `{"id", "method", "path"}` and waits for the
agent's `{"id", "status", "body"}`; the agent itself refuses anything but read-only GETs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from xds.agent.adminrelay import METHOD_NAME, PROXY_ID_METADATA, SERVICE
from xds.identity.authenticator import Authenticator, AuthError, metadata_dict
from xds.identity.credential import Credential

log = logging.getLogger("mecha.adminrelay")


class RelayError(RuntimeError):
    pass


@dataclass(eq=False)
class _Session:
    proxy_id: str
    credential: Credential
    outbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    pending: dict[int, asyncio.Future[tuple[int, str]]] = field(default_factory=dict)

    def close(self, why: str) -> None:
        self.outbox.put_nowait(None)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(RelayError(why))


class AdminRelays:
    """The open relay streams, one per proxy id (a newer stream for the same proxy replaces the older)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_stream_rpc_method_handler(self._serve)  # raw bytes both ways (JSON)
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD_NAME: method})

    def connected(self, proxy_id: str) -> bool:
        return proxy_id in self._sessions

    async def get(
        self, proxy_id: str, path: str, timeout_s: float = 5.0, method: str = "GET"
    ) -> tuple[int, str]:
        """(status, body) of GET <path> on the proxy's Envoy admin, asked through its agent (which answers any
        other method, or a path that is not read-only, with 405/403 without passing it on)."""
        session = self._sessions.get(proxy_id)
        if session is None:
            raise RelayError(f"proxy {proxy_id!r} has no admin relay (its agent is not connected)")
        cred = session.credential
        if cred.expires_at <= time.time() or self.authenticator.is_revoked(cred):
            self._drop(session, f"the credential {cred.jti} of proxy {proxy_id!r} expired or was revoked")
            raise RelayError(f"proxy {proxy_id!r}: its agent's credential expired or was revoked")
        ident = next(self._ids)
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        session.pending[ident] = future
        session.outbox.put_nowait(json.dumps({"id": ident, "method": method, "path": path}).encode())
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise RelayError(
                f"the agent of proxy {proxy_id!r} did not answer {path} within {timeout_s}s"
            ) from None
        finally:
            session.pending.pop(ident, None)

    def _drop(self, session: _Session, why: str) -> None:
        if self._sessions.get(session.proxy_id) is session:
            del self._sessions[session.proxy_id]
        session.close(why)

    def _admit(self, metadata: dict[str, str]) -> tuple[str, Credential]:
        cred = self.authenticator.credential(metadata)
        proxy_id = metadata.get(PROXY_ID_METADATA) or cred.proxy_id
        if not cred.allows_proxy_id(proxy_id):
            raise AuthError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"metadata {PROXY_ID_METADATA}: {proxy_id!r} is not the proxy the credential names "
                f"({cred.proxy_id!r})",
            )
        return proxy_id, cred

    async def _serve(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            proxy_id, cred = self._admit(metadata_dict(context.invocation_metadata()))
        except AuthError as exc:
            log.warning("admin relay stream from %s refused: %s", context.peer(), exc.message)
            await context.abort(exc.code, exc.message)
            return
        session = _Session(proxy_id, cred)
        previous = self._sessions.get(proxy_id)
        self._sessions[proxy_id] = session
        if previous is not None:
            previous.close(f"a newer admin relay stream of proxy {proxy_id!r} replaced this one")
        log.info("admin relay of proxy %s open (%s)", proxy_id, context.peer())
        reader = asyncio.create_task(self._read(context, session))
        try:
            while (message := await session.outbox.get()) is not None:
                await context.write(message)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self._drop(session, f"the admin relay stream of proxy {proxy_id!r} closed")
            log.info("admin relay of proxy %s closed", proxy_id)

    async def _read(self, context: grpc.aio.ServicerContext, session: _Session) -> None:
        """The agent's answers, matched to the waiting gets by id; the stream's end ends the session."""
        try:
            while (raw := await context.read()) is not grpc.aio.EOF:
                try:
                    answer = json.loads(raw)
                    ident, status, body = int(answer["id"]), int(answer["status"]), str(answer["body"])
                except (ValueError, TypeError, KeyError):
                    log.warning("admin relay of proxy %s: malformed answer ignored", session.proxy_id)
                    continue
                future = session.pending.get(ident)
                if future is not None and not future.done():
                    future.set_result((status, body))
        finally:
            session.close(f"the admin relay stream of proxy {session.proxy_id!r} closed")
