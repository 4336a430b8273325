"""Competing consumers (Dapr's consumer group per app id) through the capability service, on the real
brokers: two instances of one app id share a topic's messages, each message reaches exactly one of them;
when one drains (SIGTERM), the other gets the rest; N published, N delivered in total, none twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from capability_testkit import component, need_server
from test_durable_delivery import started

from capabilities.apphealth import drain

BROKERS: dict[str, tuple[tuple[str, str, int], dict[str, str]]] = {
    "redis": (
        ("Redis", "127.0.0.1", 6379),
        {"redisHost": "127.0.0.1:6379", "processingTimeout": "300ms", "redeliverInterval": "200ms"},
    ),
    "jetstream": (
        ("NATS JetStream", "127.0.0.1", 4222),
        {"natsURL": "nats://127.0.0.1:4222", "ackWait": "1s"},
    ),
    "rabbitmq": (
        ("RabbitMQ", "127.0.0.1", 5672),
        {"connectionString": "amqp://guest:guest@127.0.0.1:5672/", "requeueDelay": "50ms"},
    ),
}
N = 60


async def purge(kind: str, topic: str, app_id: str) -> None:
    try:
        if kind == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis()
            await client.delete(topic)
            await client.aclose()
        elif kind == "jetstream":
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(f"mecha-{topic}")
            await nc.close()
        else:
            import aio_pika

            connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
            channel = await connection.channel()
            await channel.queue_delete(f"{app_id}-{topic}")
            await channel.exchange_delete(topic)
            await connection.close()
    except Exception:  # best effort: names are unique per test anyway
        pass


@pytest.mark.backend
@pytest.mark.parametrize("kind", sorted(BROKERS))
async def test_two_instances_of_one_app_id_share_the_topic_exactly_once(
    kind: str, make_sidecar: Any, fake_app: Any
) -> None:
    server, metadata = BROKERS[kind]
    need_server(*server)
    topic, app_id = f"cc-{uuid.uuid4().hex[:8]}", f"orders-{uuid.uuid4().hex[:6]}"
    docs = [component("orders", f"pubsub.{kind}", **metadata)]
    subs = [{"pubsubname": "orders", "topic": topic, "route": "/orders"}]
    try:
        apps = [await fake_app(subs), await fake_app(subs)]
        runtimes = [(await started(make_sidecar, app_id, docs, app))[1] for app in apps]
        publisher, _ = await started(make_sidecar, "publisher", docs)

        def got(app: Any) -> list[int]:
            return [e["data"]["n"] for e in app.received.get("/orders", [])]

        def total() -> int:
            return sum(len(got(a)) for a in apps)

        async def until_total(count: int) -> None:  # either app may get the last one: poll both
            async with asyncio.timeout(30):
                while total() < count:  # noqa: ASYNC110 - two apps, no shared event
                    await asyncio.sleep(0.05)

        async def publish(numbers: range) -> None:
            for n in numbers:
                assert (await publisher.post(f"/v1.0/publish/orders/{topic}", json={"n": n})).status == 204

        await publish(range(N))
        await until_total(N)
        await asyncio.sleep(1.0)  # a duplicate or a redelivery would land in this window
        first, second = got(apps[0]), got(apps[1])
        assert sorted(first + second) == list(range(N)), "every message to exactly one instance"
        assert first and second, f"both instances get a share: {len(first)} / {len(second)}"

        await drain(runtimes[0], None)  # instance 0 shuts down: stops pulling, hands back nothing unacked
        await publish(range(N, 2 * N))
        await until_total(2 * N)
        await asyncio.sleep(1.0)
        assert got(apps[0]) == first, "a draining instance pulls nothing more"
        assert sorted(got(apps[0]) + got(apps[1])) == list(range(2 * N)), (
            "N published, N delivered, none twice"
        )
    finally:
        await purge(kind, topic, app_id)
