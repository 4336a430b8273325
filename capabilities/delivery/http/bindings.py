"""Input-binding delivery to an HTTP app (Dapr bindings_api.md).

At start the app is asked `OPTIONS /<binding>`: 404 means it does not read that binding, any other answer
means it does. Each event is then `POST /<binding>` with the event data as body and its metadata as
headers; a non-2xx answer (or no answer) is retried with a bounded backoff, then reported to the binding
(which retries or, for a broker, leaves the message un-acked). A 2xx JSON reply with `to: [...]` sends
its `data` to those output bindings.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capabilities.blocks.bindings.contract import Binding, InputBinding, StopReading
from capabilities.delivery.http.topics import default_backoff
from capabilities.delivery.postman import RetryDelivery

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class _Reading:
    component: InputBinding
    stop: StopReading


class InputBindings:
    def __init__(self, runtime: Runtime, *, timeout_s: float = 60.0):
        self.runtime = runtime
        self.timeout_s = timeout_s
        self.reading: dict[str, _Reading] = {}
        self.not_subscribed: dict[str, Binding] = {}  # name -> component the app declined (404)
        self.events_delivered = 0

    async def reconcile(self) -> None:
        bindings = {
            name: comp
            for name, comp in self.runtime.components("bindings").items()
            if isinstance(comp, InputBinding)
        }
        for name in list(self.reading):
            if bindings.get(name) is not self.reading[name].component:
                await self._stop(name)
        for name, component in bindings.items():
            if name in self.reading or self.not_subscribed.get(name) is component:
                continue
            if await self._app_reads(name):
                await self._start(name, component)
            else:
                self.not_subscribed[name] = component

    async def _app_reads(self, name: str) -> bool:
        try:
            response = await self.runtime.app_channel.call(
                "OPTIONS", f"/{name}", body=None, headers={}, timeout=self.timeout_s
            )
        except Exception as exc:
            log.error("input binding %s: OPTIONS /%s failed (%s); not reading it", name, name, exc)
            return False
        return response.status != 404

    async def _start(self, name: str, component: InputBinding) -> None:
        async def handler(data: bytes, metadata: dict[str, str]) -> bytes | None:
            return await default_backoff(lambda: self._deliver(name, data, metadata))

        try:
            stop = await component.read(handler)
        except Exception as exc:
            log.error("input binding %s: starting to read failed: %s", name, exc)
            return
        self.reading[name] = _Reading(component, stop)
        log.info("input binding %s delivers to POST /%s", name, name)

    async def _deliver(self, name: str, data: bytes, metadata: dict[str, str]) -> bytes | None:
        headers = {"Content-Type": metadata.get("content-type", "application/json")}
        headers.update({k: v for k, v in metadata.items() if "\n" not in k and "\n" not in v})
        try:
            response = await self.runtime.app_channel.call(
                "POST", f"/{name}", body=data, headers=headers, timeout=self.timeout_s
            )
        except Exception as exc:
            raise RetryDelivery(f"input binding {name}: delivering to the app failed: {exc}") from exc
        if not 200 <= response.status < 300:
            raise RetryDelivery(f"input binding {name}: app returned HTTP {response.status}")
        self.events_delivered += 1
        await self._apply_reply(name, response.body)
        return response.body or None

    async def _apply_reply(self, name: str, body: bytes) -> None:
        if not body.strip():
            return
        try:
            reply = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(reply, dict) or not isinstance(reply.get("to"), list):
            return
        from capabilities.blocks.bindings.service import data_bytes, send_to_output

        for target in reply["to"]:
            try:
                await send_to_output(self.runtime, str(target), data_bytes(reply.get("data")))
            except Exception as exc:
                log.warning("input binding %s: reply `to` %s failed: %s", name, target, exc)

    async def _stop(self, name: str) -> None:
        reading = self.reading.pop(name)
        try:
            await reading.stop()
        except Exception as exc:
            log.warning("input binding %s: stop failed: %s", name, exc)

    async def close(self) -> None:
        for name in list(self.reading):
            await self._stop(name)
        self.not_subscribed.clear()  # asked again after a pause (the app may read it by then)
        await asyncio.sleep(0)
