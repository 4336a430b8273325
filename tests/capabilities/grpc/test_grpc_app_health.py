"""App health for a gRPC app (APP_PROTOCOL=grpc) as daprd: the probe is AppCallbackHealthCheck/HealthCheck;
an unhealthy app gets no pub/sub messages (real Redis) and no input-binding events (real RabbitMQ) until it is
healthy again, none lost, none twice; on SIGTERM both stop pulling."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from capability_testkit import need_server
from dapr.ext.grpc import App, BindingRequest, SubscriptionMessage, TopicEventResponse
from grpc_harness import free_port, start_sidecar, write_resources

from capabilities.apphealth import AppHealth, AppHealthConfig, drain

BACKENDS = """
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: orders}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
  - {name: processingTimeout, value: 300ms}
  - {name: redeliverInterval, value: 200ms}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: jobs}
spec:
  type: bindings.rabbitmq
  version: v1
  metadata:
  - {name: host, value: "amqp://guest:guest@127.0.0.1:5672/"}
  - {name: queueName, value: QUEUE}
"""


def _post(port: int, path: str, body: dict) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def _wait(predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.backend
def test_unhealthy_grpc_app_gets_no_messages_or_binding_events_until_healthy(tmp_path: Path) -> None:
    need_server("Redis", "127.0.0.1", 6379)
    need_server("RabbitMQ", "127.0.0.1", 5672)
    topic, queue = f"ghealth-{uuid.uuid4().hex[:8]}", f"ghealth-{uuid.uuid4().hex[:8]}"
    messages: list[int] = []
    events: list[int] = []
    sick = threading.Event()
    app = App()

    @app.subscribe(pubsub_name="orders", topic=topic)
    def on_order(event: SubscriptionMessage) -> TopicEventResponse:
        messages.append(event.data()["n"])  # the CloudEvent's JSON data, parsed by the SDK
        return TopicEventResponse("success")

    @app.binding("jobs")
    def on_job(request: BindingRequest) -> None:
        events.append(json.loads(request.data)["n"])

    def health_check() -> None:
        if sick.is_set():
            raise RuntimeError("database unreachable")

    app.register_health_check(health_check)
    port = free_port()
    server = threading.Thread(
        target=app.run, kwargs={"app_port": port, "listen_address": "127.0.0.1"}, daemon=True
    )
    server.start()
    resources = write_resources(tmp_path / "resources", BACKENDS.replace("QUEUE", queue))
    sc, stop = start_sidecar(resources, app_id=f"g-{uuid.uuid4().hex[:6]}", app_port=port, protocol="grpc")
    try:
        delivery = sc.runtime.grpc_app_delivery  # type: ignore[attr-defined]
        sc.call(delivery.ready.wait())
        assert delivery.errors == []
        health = AppHealth(sc.runtime, AppHealthConfig(path="/healthz", threshold=2))

        def send(numbers: range) -> None:
            for n in numbers:
                assert _post(sc.http_port, f"/v1.0/publish/orders/{topic}", {"n": n}) == 204
                body = {"operation": "create", "data": {"n": n}}
                assert _post(sc.http_port, "/v1.0/bindings/jobs", body) in (200, 204)

        sc.call(health.check_once())
        assert health.healthy is True
        send(range(0, 5))
        _wait(lambda: len(messages) == 5 and len(events) == 5)

        sick.set()  # the app's HealthCheck fails (the HTTP path is not what a gRPC app is probed on)
        sc.call(health.check_once())
        assert health.healthy is True  # below the threshold
        sc.call(health.check_once())
        assert health.healthy is False
        assert delivery.paused and not delivery.topics.active and not delivery.bindings.reading
        send(range(5, 10))
        time.sleep(1.5)  # several redeliver intervals: a paused app gets nothing
        assert sorted(messages) == list(range(5)) and sorted(events) == list(range(5))

        sick.clear()
        sc.call(health.check_once())
        assert health.healthy is True and not delivery.paused
        _wait(lambda: len(messages) >= 10 and len(events) >= 10)
        time.sleep(0.5)  # a duplicate would arrive in this window
        assert sorted(messages) == list(range(10)), "every message exactly once"
        assert sorted(events) == list(range(10)), "every binding event exactly once"

        sc.call(drain(sc.runtime, None))  # SIGTERM: no more pulling
        assert delivery.paused and not delivery.topics.active and not delivery.bindings.reading
        send(range(10, 12))
        time.sleep(1.0)
        assert sorted(messages) == list(range(10)) and sorted(events) == list(range(10))
    finally:
        stop()
        app.stop()
        server.join(timeout=5)
        asyncio.run(_purge(topic, queue))


async def _purge(topic: str, queue: str) -> None:
    import aio_pika
    import redis.asyncio as aioredis

    client = aioredis.Redis()
    await client.delete(topic)
    await client.aclose()
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
