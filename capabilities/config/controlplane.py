"""Long-poll the control plane for Dapr resources: GET {url}/api/v1/dapr?wait=<version>.

The answer is {"version", "components": [docs], "subscriptions": [docs], "resiliencies": [docs],
"configurations": [docs]}; the server holds the request until its version differs from `wait` (or a timeout,
answering the same version or 304). Each new version is parsed and handed to `on_update`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from capabilities.config.documents import ConfigError, ResourceSet, parse_documents

log = logging.getLogger(__name__)

UpdateHandler = Callable[[ResourceSet], Awaitable[None]]
KINDS = {"components": "Component", "subscriptions": "Subscription", "resiliencies": "Resiliency"}


def reader_token() -> str | None:
    """The read-only credential of /api/v1/dapr: $MECHA_CONTROL_PLANE_TOKEN, else the file named by
    $MECHA_CONTROL_PLANE_TOKEN_FILE, else dapr-reader-token in $MECHA_STATE_DIR or the nearest .mecha/."""
    if os.environ.get("MECHA_CONTROL_PLANE_TOKEN"):
        return os.environ["MECHA_CONTROL_PLANE_TOKEN"].strip()
    candidates = (
        [Path(os.environ["MECHA_CONTROL_PLANE_TOKEN_FILE"])]
        if os.environ.get("MECHA_CONTROL_PLANE_TOKEN_FILE")
        else []
    )
    if os.environ.get("MECHA_STATE_DIR"):
        candidates.append(Path(os.environ["MECHA_STATE_DIR"]) / "dapr-reader-token")
    here = Path.cwd()
    candidates += [folder / ".mecha" / "dapr-reader-token" for folder in (here, *here.parents)]
    for path in candidates:
        try:
            return path.read_text().strip() or None
        except OSError:
            continue
    return None


def parse_payload(payload: Any, source: str, app_id: str) -> ResourceSet:
    if not isinstance(payload, dict):
        raise ConfigError(
            f"{source}: expected a JSON object with version and components, got {type(payload).__name__}"
        )
    docs: list[tuple[Any, str]] = []
    for field, kind in (*KINDS.items(), ("configurations", "Configuration")):
        entries = payload.get(field) or []
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: field {field!r} must be a list of documents")
        for index, doc in enumerate(entries):
            if isinstance(doc, dict):
                doc = {"kind": kind, **doc}
            docs.append((doc, f"{source} {field}[{index}]"))
    result = parse_documents(docs, app_id)
    result.version = str(payload.get("version", ""))
    return result


STARTING_RETRY_S = 0.05
# How long after start a refused connection counts as a control plane still starting: past it, the normal
# delay and a warning per attempt (a control plane that never comes is not polled 20 times a second).
STARTING_WINDOW_S = 15.0


class ControlPlaneWatcher:
    def __init__(
        self,
        base_url: str,
        app_id: str,
        on_update: UpdateHandler,
        *,
        poll_timeout_s: float = 65.0,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/v1/dapr"
        self.app_id = app_id
        self.on_update = on_update
        self.poll_timeout_s = poll_timeout_s
        self.retry_delay_s = retry_delay_s
        self.version = ""
        self.first_applied = asyncio.Event()
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="control-plane-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def poll_once(self, session: aiohttp.ClientSession) -> bool:
        """One long-poll; True when a new version was applied."""
        timeout = aiohttp.ClientTimeout(total=self.poll_timeout_s + 5)
        token = reader_token()  # read per poll: the file appears when a late control plane starts
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        query = {"wait": self.version}
        async with session.get(self.url, params=query, timeout=timeout, headers=headers) as resp:
            if resp.status == 304:
                return False
            if resp.status != 200:
                text = (await resp.text())[:200]
                raise ConfigError(f"{self.url}: HTTP {resp.status}: {text}")
            payload = await resp.json(content_type=None)
        try:
            resources = parse_payload(payload, self.url, self.app_id)
            if resources.version and resources.version == self.version:
                return False
            await self.on_update(resources)
        except ConfigError:
            # A refused version is not retried in a loop: wait for the next one, keep the last good config.
            if isinstance(payload, dict):
                self.version = str(payload.get("version", self.version))
            raise
        self.version = resources.version
        self.first_applied.set()
        return True

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self.poll_once(session)
                    self.last_error = None
                except asyncio.CancelledError:
                    raise
                except (aiohttp.ClientError, TimeoutError, ConfigError, ValueError) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    delay = self._retry_delay(exc)
                    # a control plane still starting is retried often: a warning each time would flood the log
                    level = logging.WARNING if delay == self.retry_delay_s else logging.DEBUG
                    log.log(level, "control plane %s: %s; retrying in %.2fs", self.url, self.last_error,
                            delay)  # fmt: skip
                    await asyncio.sleep(delay)

    def _retry_delay(self, exc: Exception) -> float:
        """Before the first config, a refused connection is a control plane still starting beside this
        service (`mecha up` starts both at once): retry within STARTING_RETRY_S, not retry_delay_s, since
        the components (and healthz) wait for that first config."""
        if (
            not self.first_applied.is_set()
            and time.monotonic() - self._started_at < STARTING_WINDOW_S
            and isinstance(exc, aiohttp.ClientConnectorError)
            and isinstance(exc.os_error, ConnectionRefusedError)  # not a DNS or certificate error
        ):
            return min(self.retry_delay_s, STARTING_RETRY_S)
        return self.retry_delay_s
