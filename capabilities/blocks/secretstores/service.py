"""Secrets service: resiliency plus the one mapping of secret store errors to Dapr errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from capabilities.blocks.state.service import describe
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


class SecretsService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self, store_name: str, key: str, metadata: dict[str, str]) -> dict[str, str]:
        store = self.runtime.component("secretstores", store_name)
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return await policy.run(lambda: store.get_secret(key, metadata))
        except DaprError:
            raise
        except Exception as exc:
            message = f"failed getting secret with key {key} from secret store {store_name}: {describe(exc)}"
            raise DaprError("ERR_SECRET_GET", message, 500) from exc

    async def bulk(self, store_name: str, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        store = self.runtime.component("secretstores", store_name)
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return await policy.run(lambda: store.bulk_get_secret(metadata))
        except DaprError:
            raise
        except Exception as exc:
            message = f"failed getting secrets from secret store {store_name}: {describe(exc)}"
            raise DaprError("ERR_SECRET_GET", message, 500) from exc
