"""The channel from the capability service to the application (HTTP), e.g. through the app's proxy inbound."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class AppChannelError(ConnectionError):
    pass


class AppChannel:
    """Calls the app at `app_url`; adds `dapr-api-token: APP_API_TOKEN` when set (Dapr app-api-token)."""

    def __init__(
        self, app_url: str | None, *, app_api_token: str | None = None, default_timeout_s: float = 60.0
    ):
        self.app_url = app_url.rstrip("/") if app_url else None
        self.app_api_token = app_api_token
        self.default_timeout_s = default_timeout_s
        self.ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return self.app_url is not None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        return self._session

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's signature
    ) -> AppResponse:
        import aiohttp

        if self.app_url is None:
            raise AppChannelError("app channel is not initialized: no app URL/port configured")
        send_headers = dict(headers or {})
        if self.app_api_token:
            send_headers["dapr-api-token"] = self.app_api_token
        url = self.app_url + (path if path.startswith("/") else "/" + path)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout if timeout is not None else self.default_timeout_s
        )
        try:
            async with self._get_session().request(
                method, url, data=body, headers=send_headers, timeout=client_timeout
            ) as resp:
                data = await resp.read()
                self.ready.set()
                return AppResponse(resp.status, {k: v for k, v in resp.headers.items()}, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AppChannelError(
                f"error invoking app channel {method} {url}: {exc or type(exc).__name__}"
            ) from exc

    def start_probe(self, interval_s: float = 0.2) -> None:
        """Mark the channel ready once the app's port accepts a TCP connection (as daprd waits for it)."""
        if self.app_url is None or self._probe is not None:
            return
        self._probe = asyncio.create_task(self._probe_loop(interval_s), name="app-channel-probe")

    async def _probe_loop(self, interval_s: float) -> None:
        assert self.app_url is not None
        parts = urlsplit(self.app_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        while not self.ready.is_set():
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
                writer.close()
                self.ready.set()
                log.info("app channel ready: %s", self.app_url)
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            try:
                await self._probe
            except asyncio.CancelledError:
                pass
            self._probe = None
        if self._session is not None:
            await self._session.close()
            self._session = None
