"""Delivery to an HTTP app: pub/sub subscriptions and input bindings.

`stop = await start(runtime)` runs in the background: once components are ready (and the app's port
answers) it asks the app `GET /dapr/subscribe`, adds the declarative Subscription resources scoped to
this app, subscribes each one to its pubsub component and delivers messages as CloudEvents; it also
starts input bindings (`OPTIONS /<binding>` then `POST /<binding>` per event). On every configuration
change (runtime.on_config_change) the set is recomputed: removed or changed subscriptions are stopped,
new ones started, and subscriptions on a component that was re-created are re-subscribed.
`active_subscriptions(runtime)` lists them in /v1.0/metadata form.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capabilities.blocks.pubsub.contract import PubSub, SubscribeOptions, Unsubscribe
from capabilities.delivery.http.bindings import InputBindings
from capabilities.delivery.http.topics import TopicHandler
from capabilities.delivery.subscriptions import Subscription, merge, parse_declarative, parse_programmatic

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None]]
_MANAGERS: dict[int, DeliveryManager] = {}


@dataclass
class _Active:
    sub: Subscription
    component: PubSub
    handler: TopicHandler
    unsubscribe: Unsubscribe


class DeliveryManager:
    def __init__(self, runtime: Runtime, *, app_timeout_s: float = 60.0):
        self.runtime = runtime
        self.app_timeout_s = app_timeout_s
        self.programmatic: list[Subscription] = []
        self.active: dict[tuple[str, str], _Active] = {}
        self.errors: list[str] = []
        self.bindings = InputBindings(runtime)
        self.ready = asyncio.Event()  # set once the first reconcile is done (tests wait on it)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.paused = ""  # why deliveries are paused (unhealthy app, shutting down); "" = delivering

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery:start")

    async def _run(self) -> None:
        components_ready = getattr(self.runtime, "components_ready", None)
        if components_ready is not None:
            await components_ready.wait()
        channel = self.runtime.app_channel
        if getattr(channel, "configured", True) and not self.app_speaks_grpc():
            ready = getattr(channel, "ready", None)
            if ready is not None:
                start_probe = getattr(channel, "start_probe", None)
                if start_probe is not None:
                    start_probe()  # idempotent; Runtime.start() normally started it already
                await ready.wait()
            await asyncio.sleep(0.2)  # let a gRPC API started right after the HTTP app claim the app first
            if not self.app_speaks_grpc():
                self.programmatic = await self._fetch_programmatic()
        await self.reconcile()
        self.ready.set()

    async def _fetch_programmatic(self) -> list[Subscription]:
        try:
            response = await self.runtime.app_channel.call(
                "GET", "/dapr/subscribe", body=None, headers={}, timeout=self.app_timeout_s
            )
        except Exception as exc:
            self._error(f"GET /dapr/subscribe failed: {exc}")
            return []
        if response.status == 404 or not response.body.strip():
            return []
        if not 200 <= response.status < 300:
            self._error(f"GET /dapr/subscribe returned HTTP {response.status}")
            return []
        try:
            payload = json.loads(response.body)
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(f"GET /dapr/subscribe: the answer is not JSON: {exc}")
            return []
        errors: list[str] = []
        subs = parse_programmatic(payload, errors)
        for err in errors:
            self._error(err)
        return subs

    def app_speaks_grpc(self) -> bool:
        """APP_PROTOCOL=grpc: capabilities.delivery.grpc delivers instead (it sets grpc_app_delivery)."""
        if getattr(self.runtime, "grpc_app_delivery", None) is not None:
            return True
        settings = getattr(self.runtime, "settings", None)
        protocol = getattr(self.runtime, "app_protocol", None) or getattr(settings, "app_protocol", None)
        protocol = protocol or os.environ.get("APP_PROTOCOL", "http")
        return str(protocol).lower() in ("grpc", "grpcs")

    def _error(self, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)

    def desired(self) -> list[Subscription]:
        errors: list[str] = []
        declarative = parse_declarative(list(self.runtime.subscriptions_docs), self.runtime.app_id, errors)
        for err in errors:
            if err not in self.errors:
                self._error(err)
        return merge(self.programmatic, declarative)

    async def reconcile(self) -> None:
        """Make the live subscriptions match desired(); also (re)start input bindings."""
        async with self._lock:
            if self._stopped or self.paused:
                return
            grpc_app = self.app_speaks_grpc()
            wanted = {} if grpc_app else {(s.pubsub_name, s.topic): s for s in self.desired()}
            for key, active in list(self.active.items()):
                current = self._component(active.sub.pubsub_name)
                if wanted.get(key) != active.sub or current is not active.component:
                    await self._stop_one(key)
            for key, sub in wanted.items():
                if key not in self.active:
                    await self._start_one(sub)
            self.runtime.programmatic_subscriptions = [
                a.sub.to_metadata() for a in self.active.values() if a.sub.kind == "PROGRAMMATIC"
            ]
            if getattr(self.runtime.app_channel, "configured", True) and not grpc_app:
                await self.bindings.reconcile()

    def _component(self, name: str) -> PubSub | None:
        try:
            return self.runtime.component("pubsub", name)
        except Exception:
            return None

    async def _start_one(self, sub: Subscription) -> None:
        try:
            component = self.runtime.component("pubsub", sub.pubsub_name)
        except Exception as exc:
            message = getattr(exc, "message", str(exc))
            self._error(f"{sub.source}: cannot subscribe to {sub.topic}: {message}")
            return
        handler = TopicHandler(self.runtime, sub, component, timeout_s=self.app_timeout_s)
        concurrency = max(16, sub.bulk.max_messages_count) if sub.bulk.enabled else 16
        options = SubscribeOptions(
            group=self.runtime.app_id, metadata=dict(sub.metadata), max_concurrency=concurrency
        )
        try:
            unsubscribe = await component.subscribe(sub.topic, handler, options)
        except Exception as exc:
            self._error(f"{sub.source}: subscribing to {sub.pubsub_name}/{sub.topic} failed: {exc}")
            return
        self.active[(sub.pubsub_name, sub.topic)] = _Active(sub, component, handler, unsubscribe)
        log.info(
            "subscribed %s/%s (%s) for app %s", sub.pubsub_name, sub.topic, sub.kind, self.runtime.app_id
        )

    async def _stop_one(self, key: tuple[str, str]) -> None:
        active = self.active.pop(key)
        try:
            await active.unsubscribe()
        except Exception as exc:
            log.warning("unsubscribing %s/%s: %s", *key, exc)
        await active.handler.close()

    async def pause(self, reason: str) -> None:
        """Stop pulling (daprd with an unhealthy app): every subscription and input binding is stopped;
        in-flight deliveries finish, un-acked messages stay with the broker for the next subscriber."""
        async with self._lock:
            if self.paused:
                return
            self.paused = reason
            for key in list(self.active):
                await self._stop_one(key)
            await self.bindings.close()
        log.warning("deliveries to app %s paused: %s", self.runtime.app_id, reason)

    async def resume(self) -> None:
        """Subscribe again (the app is healthy again); nothing happens before the first reconcile."""
        if not self.paused:
            return
        self.paused = ""
        log.info("deliveries to app %s resumed", self.runtime.app_id)
        if self.ready.is_set():
            await self.reconcile()

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        async with self._lock:
            for key in list(self.active):
                await self._stop_one(key)
            await self.bindings.close()
        _MANAGERS.pop(id(self.runtime), None)


async def start(runtime: Runtime) -> Stop:
    """Start delivery for this runtime; return the async stop callable (build_app calls it on cleanup)."""
    manager = DeliveryManager(runtime)
    _MANAGERS[id(runtime)] = manager

    async def on_change() -> None:
        if manager.ready.is_set():
            await manager.reconcile()

    runtime.on_config_change(on_change)
    manager.start()
    return manager.stop


def manager_for(runtime: Runtime) -> DeliveryManager | None:
    return _MANAGERS.get(id(runtime))


def active_subscriptions(runtime: Runtime) -> list[dict[str, Any]]:
    """The live subscriptions of this runtime in /v1.0/metadata `subscriptions[]` form."""
    manager = _MANAGERS.get(id(runtime))
    if manager is None:
        return []
    return [active.sub.to_metadata() for active in manager.active.values()]
