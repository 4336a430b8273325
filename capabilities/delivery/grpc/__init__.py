"""Delivery of pub/sub and input-binding events to an app that speaks gRPC (APP_PROTOCOL=grpc).

`await start(runtime)` returns an async stop callable. It connects to the app's AppCallback service in the
background (the app may start after the capability service), asks ListTopicSubscriptions and
ListInputBindings, adds the declarative Subscription resources, and subscribes each one; after every
config change (components pushed by the control plane, a replaced pubsub) it reconciles them again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

Stop = Callable[[], Awaitable[None]]


async def start(runtime: Runtime) -> Stop:
    """Start gRPC delivery for `runtime` (see capabilities.delivery.grpc.app). The machinery is imported here,
    on use: the gRPC API imports capabilities.delivery.grpc.events at start-up, and only an app with
    APP_PROTOCOL=grpc needs the rest (keeps ~10 ms of imports off the capability service's start)."""
    from capabilities.delivery.grpc.app import start as start_app

    return await start_app(runtime)
