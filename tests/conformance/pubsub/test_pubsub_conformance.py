"""The pub/sub contract, run against every backend in tests/conformance/config/pubsub.yaml (real servers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from capabilities import registry
from capabilities.blocks.pubsub import defaults
from capabilities.blocks.pubsub.contract import (
    BulkEntry,
    BulkPublisher,
    Feature,
    Message,
    PubSub,
    PubSubBackendError,
    SubscribeOptions,
)
from capabilities.daprspec.component import ComponentSpec

GROUPS = ("app-a", "app-b")


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll a condition the handlers make true (the brokers give no completion signal to wait on)."""
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def make(row: dict[str, Any], **override: str) -> PubSub:
    spec = ComponentSpec(
        name=f"conf-{row['name']}",
        type=row["type"],
        metadata={**row.get("metadata", {}), **override},
        source="tests/conformance/config/pubsub.yaml",
    )
    return registry.create(spec)


async def purge(row: dict[str, Any], topic: str) -> None:
    """Remove what a test left on the broker (streams, exchanges, queues)."""
    kind = row["type"]
    with contextlib.suppress(Exception):
        if kind == "pubsub.redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis(host="127.0.0.1", port=6379)
            await client.delete(topic)
            await client.aclose()
        elif kind == "pubsub.jetstream":
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(f"mecha-{topic}")
            await nc.close()
        elif kind == "pubsub.rabbitmq":
            import aio_pika

            conn = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
            channel = await conn.channel()
            for group in GROUPS:
                await channel.queue_delete(f"{group}-{topic}")
            await channel.exchange_delete(topic)
            await conn.close()


@pytest.fixture
async def pubsub(row: dict[str, Any], topic: str) -> AsyncIterator[PubSub]:
    component = make(row)
    await component.init()
    try:
        yield component
    finally:
        await component.close()
        await purge(row, topic)


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [m.data for m in self.messages]


async def test_features_match_the_config_table(row: dict[str, Any]) -> None:
    component = make(row)
    declared = {str(f) for f in component.features()}
    assert declared == set(row["features"])
    assert declared <= {f.value for f in Feature}
    assert isinstance(component, BulkPublisher) == (Feature.BULK_PUBLISH in declared)


async def test_publish_then_subscriber_receives_every_message(
    row: dict[str, Any], pubsub: PubSub, topic: str
) -> None:
    got = Collector()
    await pubsub.subscribe(topic, got, SubscribeOptions(group="app-a"))
    await asyncio.sleep(0.2)  # subscriptions on MQTT/RabbitMQ settle asynchronously
    sent = [f"message-{i}".encode() for i in range(10)]
    for payload in sent:
        await pubsub.publish(topic, payload, {"k": "v"})
    await wait_until(lambda: len(got.messages) >= len(sent))
    assert sorted(got.payloads) == sorted(sent)
    assert {m.topic for m in got.messages} == {topic}
    if row.get("metadata_roundtrip"):
        assert all(m.metadata.get("k") == "v" for m in got.messages)


async def test_each_group_gets_every_message_and_replicas_share(
    row: dict[str, Any], pubsub: PubSub, topic: str
) -> None:
    if Feature.CONSUMER_GROUPS not in pubsub.features():
        pytest.skip("backend does not declare CONSUMER_GROUPS")
    replica1, replica2, other_app = Collector(), Collector(), Collector()
    await pubsub.subscribe(topic, replica1, SubscribeOptions(group="app-a"))
    await pubsub.subscribe(topic, replica2, SubscribeOptions(group="app-a"))
    await pubsub.subscribe(topic, other_app, SubscribeOptions(group="app-b"))
    await asyncio.sleep(0.3)
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        await pubsub.publish(topic, payload, {})
    await wait_until(
        lambda: len(other_app.messages) >= 20 and len(replica1.messages) + len(replica2.messages) >= 20
    )
    await asyncio.sleep(0.3)  # would-be duplicates have time to show up
    assert sorted(other_app.payloads) == sorted(sent)
    shared = replica1.payloads + replica2.payloads
    assert sorted(shared) == sorted(sent), "each message must reach exactly one replica of app-a"


async def test_handler_failure_means_redelivery(pubsub: PubSub, topic: str) -> None:
    if Feature.REDELIVERY not in pubsub.features():
        pytest.skip("backend does not declare REDELIVERY")
    attempts: list[bytes] = []

    async def flaky(message: Message) -> None:
        attempts.append(message.data)
        if attempts.count(message.data) == 1:
            raise RuntimeError("first attempt fails")

    await pubsub.subscribe(topic, flaky, SubscribeOptions(group="app-a"))
    await asyncio.sleep(0.2)
    await pubsub.publish(topic, b"retry-me", {})
    await wait_until(lambda: attempts.count(b"retry-me") >= 2)


async def test_unacked_message_survives_subscriber_death(
    row: dict[str, Any], pubsub: PubSub, topic: str
) -> None:
    if Feature.DURABLE not in pubsub.features():
        pytest.skip("backend does not declare DURABLE")
    started = asyncio.Event()

    async def dies_mid_handling(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()  # never acks: the subscriber is killed while handling

    first = make(row)
    await first.init()
    await first.subscribe(topic, dies_mid_handling, SubscribeOptions(group="app-a"))
    await asyncio.sleep(0.2)
    await pubsub.publish(topic, b"precious", {})
    await asyncio.wait_for(started.wait(), 10)
    await first.close()  # the broker sees the consumer vanish without an ack

    restarted = make(row)
    await restarted.init()
    try:
        got = Collector()
        await restarted.subscribe(topic, got, SubscribeOptions(group="app-a"))
        await wait_until(lambda: b"precious" in got.payloads, limit_s=15)
    finally:
        await restarted.close()


async def test_bulk_publish_delivers_all_entries(pubsub: PubSub, topic: str) -> None:
    got = Collector()
    await pubsub.subscribe(topic, got, SubscribeOptions(group="app-a"))
    await asyncio.sleep(0.2)
    entries = [BulkEntry(f"e{i}", f"bulk-{i}".encode()) for i in range(8)]
    if isinstance(pubsub, BulkPublisher):
        failed = await pubsub.bulk_publish(topic, entries)
    else:
        failed = await defaults.bulk_publish(pubsub, topic, entries)
    assert failed == {}
    await wait_until(lambda: len(got.messages) >= 8)
    assert sorted(got.payloads) == sorted(e.data for e in entries)


async def test_unsubscribe_stops_delivery(pubsub: PubSub, topic: str) -> None:
    stopped, still = Collector(), Collector()
    unsubscribe = await pubsub.subscribe(topic, stopped, SubscribeOptions(group="app-a"))
    await pubsub.subscribe(topic, still, SubscribeOptions(group="app-b"))
    await asyncio.sleep(0.2)
    await unsubscribe()
    await pubsub.publish(topic, b"after", {})
    await wait_until(lambda: b"after" in still.payloads)
    await asyncio.sleep(0.2)
    assert b"after" not in stopped.payloads


async def test_close_cancels_subscription_tasks(row: dict[str, Any], topic: str) -> None:
    component = make(row)
    await component.init()
    before = {t for t in asyncio.all_tasks() if not t.done()}
    await component.subscribe(topic, Collector(), SubscribeOptions(group="app-a"))
    await component.close()
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert not [t for t in leftover if t.get_name().split(":")[0] in ("inmem", "redis", "jetstream", "mqtt")]
    await purge(row, topic)


async def test_server_down_is_a_backend_error_naming_the_server(row: dict[str, Any], topic: str) -> None:
    down = row.get("down_metadata")
    if not down:
        pytest.skip("no server to take down")
    component = make(row, **down)
    with pytest.raises(PubSubBackendError) as info:
        await asyncio.wait_for(component.init(), 15)
    assert "127.0.0.1:1" in str(info.value)
    with contextlib.suppress(Exception):
        await component.close()


def test_bad_metadata_names_the_component_and_field() -> None:
    from capabilities.errors import DaprError

    spec = ComponentSpec(
        name="broken", type="pubsub.redis", metadata={"processingTimeout": "soon"}, source="x.yaml"
    )
    with pytest.raises(DaprError) as info:
        registry.create(spec)
    assert "x.yaml" in info.value.message and "processingTimeout" in info.value.message
    assert "broken" in info.value.message
