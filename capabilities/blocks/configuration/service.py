"""Configuration service: subscriptions by id, delivery of updates to the app, error mapping for the block."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from capabilities.blocks.configuration.contract import ConfigItem, ConfigurationStore, Unsubscribe
from capabilities.blocks.state.service import describe
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

Deliver = Callable[[dict[str, ConfigItem]], Awaitable[None]]


@dataclass
class _Source:
    """What a subscription was made on, so it can be made again when its component is reloaded."""

    keys: list[str]
    metadata: dict[str, str]
    store: ConfigurationStore  # the component instance subscribed to
    deliver: Deliver


class ConfigurationService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._subscriptions: dict[str, tuple[str, Unsubscribe]] = {}
        self._sources: dict[str, _Source] = {}
        self.delivered = 0  # updates POSTed to the app (observability/tests)
        on_change = getattr(runtime, "on_config_change", None)
        if on_change is not None:  # an edited component is a new instance: follow it (follow_reloads)
            on_change(self.follow_reloads)

    async def get(self, store_name: str, keys: list[str], metadata: dict[str, str]) -> dict[str, ConfigItem]:
        store = self.runtime.component("configuration", store_name)
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return await policy.run(lambda: store.get(keys, metadata))
        except DaprError:
            raise
        except Exception as exc:
            message = f"failed to get {keys} from Configuration store {store_name}: {describe(exc)}"
            raise DaprError("ERR_CONFIGURATION_GET", message, 500) from exc

    async def subscribe(self, store_name: str, keys: list[str], metadata: dict[str, str]) -> str:
        store = self.runtime.component("configuration", store_name)
        sub_id = str(uuid.uuid4())

        async def deliver(items: dict[str, ConfigItem]) -> None:
            await self._deliver(store_name, sub_id, items)

        try:
            unsubscribe = await store.subscribe(keys, metadata, deliver)
        except DaprError:
            raise
        except Exception as exc:
            message = f"failed to subscribe {keys} from Configuration store {store_name}: {describe(exc)}"
            raise DaprError("ERR_CONFIGURATION_SUBSCRIBE", message, 500) from exc
        self._subscriptions[sub_id] = (store_name, unsubscribe)
        self._sources[sub_id] = _Source(list(keys), dict(metadata), store, deliver)
        return sub_id

    async def follow_reloads(self) -> None:
        """After a config change: a subscription whose component was edited (a new instance) is made again on
        the new one and gets the keys' current values as an update; one whose component is gone, or whose
        new instance refuses it, ends with the error (the old instance is closed: it would go silent)."""
        for sub_id in list(self._sources):
            entry, source = self._subscriptions.get(sub_id), self._sources.get(sub_id)
            if entry is None or source is None:
                continue
            store_name, old_unsubscribe = entry
            current = self.runtime.components("configuration").get(store_name)
            if current is source.store:
                continue
            try:
                await old_unsubscribe()
            except Exception as exc:  # the closed instance may not know it any more
                log.debug("configuration subscription %s: old unsubscribe: %s", sub_id, exc)
            if current is None:
                gone = f"configuration store {store_name} not found (removed)"
                self._end(sub_id, DaprError("ERR_CONFIGURATION_STORE_NOT_FOUND", gone, 400))
                continue
            try:
                unsubscribe = await current.subscribe(source.keys, source.metadata, source.deliver)
                values = await current.get(source.keys, source.metadata)
            except Exception as exc:
                message = (f"failed to subscribe {source.keys} from Configuration store {store_name} "
                           f"after it was reloaded: {describe(exc)}")  # fmt: skip
                self._end(sub_id, DaprError("ERR_CONFIGURATION_SUBSCRIBE", message, 500))
                continue
            self._subscriptions[sub_id] = (store_name, unsubscribe)
            source.store = current
            log.info("configuration subscription %s follows the reloaded store %s", sub_id, store_name)
            await source.deliver(values)

    def _end(self, sub_id: str, error: DaprError) -> None:
        """The subscription cannot continue: drop it and tell its subscriber (HTTP: the log only)."""
        self._subscriptions.pop(sub_id, None)
        self._sources.pop(sub_id, None)
        log.warning("configuration subscription %s ended: %s", sub_id, error.message)
        self._ended(sub_id, error)

    def _ended(self, sub_id: str, error: DaprError) -> None:
        """Hook for subclasses that hold a stream for the subscription."""

    async def unsubscribe(self, store_name: str, sub_id: str) -> None:
        self.runtime.component("configuration", store_name)
        entry = self._subscriptions.get(sub_id)
        if entry is None or entry[0] != store_name:
            message = f"failed to unsubscribe to configuration request {sub_id}: subscription does not exist"
            raise DaprError("ERR_CONFIGURATION_UNSUBSCRIBE", message, 500)
        del self._subscriptions[sub_id]
        self._sources.pop(sub_id, None)
        await entry[1]()

    async def _deliver(self, store_name: str, sub_id: str, items: dict[str, ConfigItem]) -> None:
        """Like daprd: POST the whole update to /configuration/<store>/<key> once per changed key."""
        if not items:
            return
        body = json.dumps({"id": sub_id, "items": {k: v.to_json() for k, v in items.items()}}).encode()
        for key in items:
            try:
                resp = await self.runtime.app_channel.call(
                    "POST",
                    f"/configuration/{store_name}/{key}",
                    body=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30.0,
                )
                self.delivered += 1
                if resp.status >= 300:
                    log.warning("configuration update %s/%s: app answered %s", store_name, key, resp.status)
            except Exception as exc:
                log.warning("configuration update %s/%s not delivered: %s", store_name, key, exc)

    async def close(self) -> None:
        self._sources.clear()
        for sub_id in list(self._subscriptions):
            _, unsubscribe = self._subscriptions.pop(sub_id)
            try:
                await unsubscribe()
            except Exception as exc:
                log.warning("configuration unsubscribe %s: %s", sub_id, exc)
