"""Lock service: request validation, key scheme `lock||<prefix>||<resourceId>`, error mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capabilities.blocks.lock.contract import LockStore, UnlockStatus
from capabilities.blocks.state.keys import key_prefix
from capabilities.blocks.state.service import describe
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def _bad(message: str) -> DaprError:
    return DaprError("ERR_MALFORMED_REQUEST", message, 400, "INVALID_ARGUMENT")


class LockService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _resolve(self, store_name: str, resource_id: Any, owner: Any) -> tuple[LockStore, str]:
        store = self.runtime.component("lock", store_name)
        if not isinstance(resource_id, str) or not resource_id:
            raise _bad(f"ResourceId is empty in lock store {store_name}")
        if not isinstance(owner, str) or not owner:
            raise _bad(f"LockOwner is empty in lock store {store_name}")
        spec = self.runtime.component_spec(store_name)
        prefix = key_prefix(spec.metadata.get("keyPrefix") if spec else None, self.runtime.app_id, store_name)
        return store, f"lock||{prefix}{resource_id}"

    async def try_lock(self, store_name: str, resource_id: Any, owner: Any, expiry: Any) -> bool:
        store, key = self._resolve(store_name, resource_id, owner)
        if not isinstance(expiry, int) or isinstance(expiry, bool) or expiry <= 0:
            raise _bad(f"ExpiryInSeconds is not positive in lock store {store_name}")
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return bool(await policy.run(lambda: store.try_lock(key, owner, expiry)))
        except DaprError:
            raise
        except Exception as exc:
            raise DaprError(
                "ERR_TRY_LOCK", f"failed to try acquiring lock: lock store {store_name}: {describe(exc)}", 500
            ) from exc

    async def unlock(self, store_name: str, resource_id: Any, owner: Any) -> UnlockStatus:
        store, key = self._resolve(store_name, resource_id, owner)
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return UnlockStatus(await policy.run(lambda: store.unlock(key, owner)))
        except DaprError:
            raise
        except Exception as exc:
            raise DaprError(
                "ERR_UNLOCK", f"failed to release lock: lock store {store_name}: {describe(exc)}", 500
            ) from exc
