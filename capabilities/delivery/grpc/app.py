"""GrpcAppDelivery and start(): see the package docstring (capabilities/delivery/grpc/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from capabilities.delivery.grpc.bindings import BindingDelivery
from capabilities.delivery.grpc.channel import AppCallbackChannel, app_target
from capabilities.delivery.grpc.declarative import declarative_subscriptions
from capabilities.delivery.grpc.topics import TopicDelivery, TopicSubscription

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None]]


class GrpcAppDelivery:
    def __init__(self, runtime: Runtime, channel: AppCallbackChannel):
        self.runtime = runtime
        self.channel = channel
        self.topics = TopicDelivery(runtime, channel)
        self.bindings = BindingDelivery(runtime, channel)
        self.ready = asyncio.Event()  # set once every subscription is in place (tests wait on it)
        self.errors: list[str] = []
        self.app_subscriptions: list[TopicSubscription] = []  # from ListTopicSubscriptions (metadata API)
        self.app_bindings: list[str] = []  # from ListInputBindings
        self._listed = False
        self._list_errors: list[str] = []
        self._closed = False
        self._lock = asyncio.Lock()
        self.paused = ""  # why deliveries are paused (unhealthy app, shutting down); "" = delivering

    async def run(self) -> None:
        await self.channel.wait_ready()
        components_ready = getattr(self.runtime, "components_ready", None)
        if components_ready is not None:
            await components_ready.wait()  # the pubsub/bindings components must be loaded first
        self.app_subscriptions = await self._app_subscriptions()
        self.app_bindings = await self._app_bindings()
        self._listed = True
        # Components and Subscription resources change at run time (control-plane pushes): follow them.
        on_change = getattr(self.runtime, "on_config_change", None)
        if on_change is not None:
            on_change(self.reconcile)
        await self.reconcile()
        self.ready.set()

    async def reconcile(self) -> None:
        """Make the live subscriptions and input-binding readers match the app's lists + loaded components."""
        if not self._listed or self._closed:
            return
        async with self._lock:
            if self.paused:  # resume() reconciles again
                return
            errors: list[str] = []
            wanted = list(self.app_subscriptions)
            seen = {(s.pubsub_name, s.topic) for s in wanted}
            for sub in declarative_subscriptions(self.runtime):
                if (sub.pubsub_name, sub.topic) not in seen:  # the app's own list wins, like daprd
                    wanted.append(sub)
            keys = {(s.pubsub_name, s.topic) for s in wanted}
            for key in [k for k in self.topics.active if k not in keys]:
                await self.topics.unsubscribe(key)
            for sub in wanted:
                if self.topics.is_current(sub):
                    continue
                try:
                    await self.topics.subscribe(sub)
                except Exception as exc:  # one bad subscription (unknown pubsub) must not stop the others
                    errors.append(f"subscription {sub.pubsub_name}/{sub.topic}: {exc}")
            for name in [n for n in self.bindings.reading if n not in self.app_bindings]:
                await self.bindings.stop(name)
            for name in self.app_bindings:
                if self.bindings.is_current(name):
                    continue
                if name in self.bindings.reading:  # its component was removed or replaced
                    await self.bindings.stop(name)
                try:
                    await self.bindings.start(name)
                except Exception as exc:
                    errors.append(f"input binding {name}: {exc}")
            for message in errors:
                if message not in self.errors:
                    log.error("gRPC app delivery: %s", message)
            self.errors = self._list_errors + errors

    async def pause(self, reason: str) -> None:
        """Stop pulling (daprd with an unhealthy app, or shutting down): every topic subscription and input
        binding reader stops; in-flight deliveries finish, un-acked messages stay with the broker."""
        async with self._lock:
            if self.paused:
                return
            self.paused = reason
            for key in reversed(list(self.topics.active)):
                await self.topics.unsubscribe(key)
            await self.bindings.close()
        log.warning("deliveries to gRPC app %s paused: %s", self.runtime.app_id, reason)

    async def resume(self) -> None:
        """Subscribe again (the app is healthy again); before the app's lists are read this only clears."""
        if not self.paused:
            return
        self.paused = ""
        log.info("deliveries to gRPC app %s resumed", self.runtime.app_id)
        await self.reconcile()

    def _error(self, message: str) -> None:
        log.error("gRPC app delivery: %s", message)
        self._list_errors.append(message)
        self.errors.append(message)

    async def _app_subscriptions(self) -> list[TopicSubscription]:
        import grpc

        try:
            reply = await self.channel.call(
                self.channel.app.ListTopicSubscriptions, empty_pb2.Empty(), timeout_s=10
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                self._error(f"ListTopicSubscriptions failed: {err.code().name} {err.details()}")
            return []
        return [TopicSubscription.from_proto(s) for s in reply.subscriptions]

    async def _app_bindings(self) -> list[str]:
        import grpc

        try:
            reply = await self.channel.call(
                self.channel.app.ListInputBindings, empty_pb2.Empty(), timeout_s=10
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                self._error(f"ListInputBindings failed: {err.code().name} {err.details()}")
            return []
        return list(reply.bindings)

    async def close(self) -> None:
        self._closed = True
        await self.bindings.close()
        await self.topics.close()
        await self.channel.close()


async def start(runtime: Runtime) -> Stop:
    settings = getattr(runtime, "settings", None)
    channel = AppCallbackChannel(
        app_target(runtime),
        app_api_token=getattr(settings, "app_api_token", None),
        max_message_bytes=int(getattr(settings, "max_body_bytes", 4 << 20) or (4 << 20)),
    )
    delivery = GrpcAppDelivery(runtime, channel)
    task = asyncio.create_task(delivery.run(), name="grpc-app-delivery")
    with contextlib.suppress(AttributeError):
        runtime.grpc_app_delivery = delivery  # inspectable by metadata and tests

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await delivery.close()

    return stop
