"""Sequencer service: validation, key scheme `sequencer||<prefix>||<key>`, error mapping for the block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capabilities.blocks.sequencer.contract import Increment
from capabilities.blocks.state.keys import key_prefix
from capabilities.blocks.state.service import describe
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


class SequencerService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def next_id(self, store_name: str, key: Any, increment: Any = None) -> int:
        store = self.runtime.component("sequencer", store_name)
        if not isinstance(key, str) or not key:
            raise DaprError("ERR_MALFORMED_REQUEST", f"key is empty in sequencer store {store_name}", 400)
        try:
            mode = Increment(str(increment or "WEAK").upper())
        except ValueError:
            raise DaprError(
                "ERR_MALFORMED_REQUEST",
                f"options.increment must be WEAK or STRONG in sequencer store {store_name}, "
                f"got {increment!r}",
                400,
            ) from None
        spec = self.runtime.component_spec(store_name)
        prefix = key_prefix(spec.metadata.get("keyPrefix") if spec else None, self.runtime.app_id, store_name)
        policy = self.runtime.resiliency.for_component(store_name, "outbound")
        try:
            return int(await policy.run(lambda: store.next_id(f"sequencer||{prefix}{key}", mode)))
        except DaprError:
            raise
        except Exception as exc:
            raise DaprError(
                "ERR_SEQUENCER_NEXT_ID",
                f"failed to get next id from sequencer store {store_name}: {describe(exc)}",
                500,
            ) from exc
