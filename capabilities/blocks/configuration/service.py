"""Configuration service: subscriptions by id, delivery of updates to the app, error mapping for the block."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from capabilities.blocks.configuration.contract import ConfigItem, Unsubscribe
from capabilities.blocks.state.service import describe
from capabilities.errors import DaprError

log = logging.getLogger(__name__)


class ConfigurationService:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._subscriptions: dict[str, tuple[str, Unsubscribe]] = {}
        self.delivered = 0  # updates POSTed to the app (observability/tests)

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
        return sub_id

    async def unsubscribe(self, store_name: str, sub_id: str) -> None:
        self.runtime.component("configuration", store_name)
        entry = self._subscriptions.get(sub_id)
        if entry is None or entry[0] != store_name:
            message = f"failed to unsubscribe to configuration request {sub_id}: subscription does not exist"
            raise DaprError("ERR_CONFIGURATION_UNSUBSCRIBE", message, 500)
        del self._subscriptions[sub_id]
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
        for sub_id in list(self._subscriptions):
            _, unsubscribe = self._subscriptions.pop(sub_id)
            try:
                await unsubscribe()
            except Exception as exc:
                log.warning("configuration unsubscribe %s: %s", sub_id, exc)
