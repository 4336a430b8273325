"""The agent's side of the admin relay: the control plane reads this proxy's Envoy admin through the agent.

Envoy's admin stays on loopback (or a Unix socket) beside the agent; the control plane never reaches it over
the network (istiod asks istio-agent the same way). The agent opens one long-lived bidi stream on its
authenticated channel (AdminRelay/Serve, the workload credential in the metadata: the control plane files the
stream under the proxy id that credential names). Messages are JSON: the control plane sends
`{"id", "method", "path"}`, the agent GETs http://<admin><path> and answers `{"id", "status", "body"}`.

The control plane is trusted no more than it needs to be: only GETs of read-only admin paths
(READ_ONLY_PATHS) are relayed; `/quitquitquit`, `/drain_listeners`, `/logging`, a POST or any other method
is refused here (403 / 405), whatever the control plane asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import grpc

from xds.agent.channel import CredentialSource

log = logging.getLogger("mecha.agent.adminrelay")
SERVICE = "mecha.agent.v1.AdminRelay"
METHOD_NAME = "Serve"
METHOD = f"/{SERVICE}/{METHOD_NAME}"
# The node id this stream serves when it is not the credential's own (scaled replicas: <proxy id>.<instance>);
# the control plane accepts it only when the credential allows it (Credential.allows_proxy_id).
PROXY_ID_METADATA = "x-mecha-proxy-id"
READ_ONLY_PATHS = frozenset({"/config_dump", "/clusters", "/stats", "/ready", "/server_info"})
# below the xDS server's 16 MiB receive limit (xds/server/server.py), JSON escaping included
MAX_BODY_CHARS = 12 * 1024 * 1024
MAX_IN_FLIGHT = 4  # admin reads served at once; more wait their turn
RETRY_MAX_S = 5.0


def refusal(method: str, path: str) -> tuple[int, str]:
    """(0, "") when the relay may GET this path from Envoy's admin; else (status, reason)."""
    if method != "GET":
        return 405, f"method {method!r}: the admin relay only reads (GET)"
    if not path.startswith("/") or any(c.isspace() or ord(c) < 0x20 for c in path):
        return 403, f"path {path[:200]!r}: not a plain admin path"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or parts.fragment or parts.path not in READ_ONLY_PATHS:
        allowed = ", ".join(sorted(READ_ONLY_PATHS))
        return 403, f"path {parts.path[:200]!r}: not a read-only admin path (allowed: {allowed})"
    return 0, ""


class AdminRelayClient:
    """Holds the relay stream open (reopened with backoff) and answers the control plane's admin reads."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        credential: CredentialSource,
        proxy_id: str,
        admin: str,
        timeout_s: float = 5.0,
    ) -> None:
        self._channel = channel
        self._credential = credential
        self.proxy_id = proxy_id
        self.admin = admin  # HOST:PORT, or unix:/path/to/admin.sock
        self.timeout_s = timeout_s
        self.answered = 0
        self.refused = 0

    async def run(self) -> None:
        """Until cancelled; ends by itself only when the control plane has no relay (an older one, or one
        started with --insecure-xds: then proxy-config uses the admin address the proxy announces)."""
        delay = 0.25
        while True:
            try:
                await self._serve_once()
                delay = 0.25  # the control plane ended the stream (a restart): open again soon
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("the control plane has no admin relay: proxy-config needs the admin address")
                    return
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    log.warning("admin relay refused: %s", exc.details())
                else:
                    log.debug("admin relay stream ended: %s %s", exc.code(), exc.details())
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _serve_once(self) -> None:
        import aiohttp  # only when an admin is relayed (the agent's imports stay small otherwise)

        outbox: asyncio.Queue[bytes] = asyncio.Queue()

        async def answers() -> Any:
            while True:
                yield await outbox.get()

        metadata = (*self._credential.metadata(), (PROXY_ID_METADATA, self.proxy_id))
        call = self._channel.stream_stream(METHOD)(answers(), metadata=metadata)
        unix = self.admin.removeprefix("unix:") if self.admin.startswith("unix:") else None
        connector = aiohttp.UnixConnector(path=unix) if unix else None
        base = "http://localhost" if unix else f"http://{self.admin}"
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                async for raw in call:
                    task = asyncio.create_task(self._answer(session, base, raw, outbox, limit))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:
                for task in list(tasks):
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                call.cancel()

    async def _answer(
        self, session: Any, base: str, raw: bytes, outbox: asyncio.Queue[bytes], limit: asyncio.Semaphore
    ) -> None:
        try:
            ask = json.loads(raw)
            ident, path = ask["id"], ask["path"]
            method = str(ask.get("method", "GET")).upper()
            if not isinstance(ident, int) or not isinstance(path, str):
                raise TypeError("id must be an integer and path a string")
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("admin relay: malformed request from the control plane (%s)", exc)
            return
        status, why = refusal(method, path)
        if status:
            self.refused += 1
            log.warning("admin relay: refused %r %r for the control plane: %s", method, path[:200], why)
            outbox.put_nowait(json.dumps({"id": ident, "status": status, "body": why}).encode())
            return
        async with limit:
            status, body = await self._get(session, base + path)
        self.answered += 1
        outbox.put_nowait(json.dumps({"id": ident, "status": status, "body": body}).encode())

    async def _get(self, session: Any, url: str) -> tuple[int, str]:
        import aiohttp

        try:
            async with session.get(url, allow_redirects=False) as resp:
                body = await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 502, f"Envoy admin at {self.admin} is unreachable from its agent: {exc}"
        if len(body) > MAX_BODY_CHARS:
            return 502, f"Envoy admin answer of {len(body)} characters exceeds the relay's {MAX_BODY_CHARS}"
        return resp.status, body
