"""Input-binding delivery to a gRPC app: ListInputBindings, then OnBindingEvent per event.

The app's reply may ask daprd to save state (`store_name` + `states`) and to send `data` to output bindings
(`to`); both go through the same block services as the HTTP API. A gRPC error from the app fails the event
(the binding component decides whether it is retried, like daprd).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dapr.proto.runtime.v1 import appcallback_pb2

from capabilities.blocks.bindings.contract import Binding
from capabilities.delivery.grpc.channel import AppCallbackChannel

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None]]


class BindingDelivery:
    def __init__(self, runtime: Runtime, channel: AppCallbackChannel, *, timeout_s: float = 60.0):
        self.runtime = runtime
        self.channel = channel
        self.timeout_s = timeout_s
        self.reading: dict[str, tuple[Binding, Stop | None]] = {}  # name -> (component instance, stop)

    @property
    def started(self) -> list[str]:
        return list(self.reading)

    def is_current(self, name: str) -> bool:
        """Reading from the binding component instance loaded now."""
        active = self.reading.get(name)
        return active is not None and self.runtime.components("bindings").get(name) is active[0]

    async def start(self, name: str) -> None:
        if name in self.reading:
            await self.stop(name)
        binding = self.runtime.component("bindings", name)
        read = getattr(binding, "read", None)
        if read is None:
            raise ValueError(f"binding {name} is not an input binding (component has no read())")

        async def handler(data: bytes, metadata: dict[str, str]) -> bytes | None:
            return await self.on_event(name, data, metadata)

        # contract: read(handler) -> stop (capabilities.blocks.bindings.contract.InputBinding)
        self.reading[name] = (binding, await read(handler))
        log.info("gRPC app reads input binding %s", name)

    async def stop(self, name: str) -> None:
        _, stop = self.reading.pop(name)
        if stop is None:
            return
        try:
            await stop()
        except Exception as exc:
            log.warning("stopping input binding %s failed: %s", name, exc)

    async def on_event(self, name: str, data: bytes, metadata: dict[str, str]) -> bytes | None:
        request = appcallback_pb2.BindingEventRequest(name=name, data=data, metadata=metadata)
        reply = await self.channel.call(self.channel.app.OnBindingEvent, request, timeout_s=self.timeout_s)
        await self._apply_reply(name, reply)
        return reply.data or None

    async def _apply_reply(self, name: str, reply: appcallback_pb2.BindingEventResponse) -> None:
        if reply.store_name and reply.states:
            from capabilities.api.grpc.state import set_request
            from capabilities.blocks.state.service import StateService

            await StateService(self.runtime).save(reply.store_name, [set_request(s) for s in reply.states])
        for target in reply.to:
            invoke = _output_invoker()
            if invoke is None:
                log.warning(
                    "binding %s: reply asks to send to %s but output bindings are unavailable", name, target
                )
                continue
            await invoke(self.runtime, target, reply.data)

    async def close(self) -> None:
        for name in reversed(list(self.reading)):
            await self.stop(name)


def _output_invoker() -> Any:
    """The bindings block's output call, when the messaging side provides it."""
    try:
        from capabilities.blocks.bindings.service import send_to_output  # type: ignore[attr-defined]
    except ImportError:
        return None
    return send_to_output
