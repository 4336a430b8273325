"""JetStream and ackWait on the real server: a message the component has pulled counts against its ackWait
from the moment the server hands it over, so the component must neither pull more than its free handlers
can take nor hold pulled messages back; otherwise the server redelivers messages that are being (or are
about to be) handled, and an app gets them twice. At-least-once stays: a handler that fails is retried."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from capability_testkit import need_server

from capabilities import registry
from capabilities.blocks.pubsub.contract import Message, PubSub, SubscribeOptions
from capabilities.daprspec.component import ComponentSpec

pytestmark = pytest.mark.backend
URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def topic() -> AsyncIterator[str]:
    need_server("NATS JetStream", "127.0.0.1", 4222)
    name = f"ackwait-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(Exception):
        import nats

        nc = await nats.connect(URL)
        await nc.jetstream().delete_stream(f"mecha-{name}")
        await nc.close()


@pytest.fixture
async def jetstream() -> AsyncIterator[Callable[..., PubSub]]:
    made: list[PubSub] = []

    def make(**metadata: str) -> PubSub:
        spec = ComponentSpec(
            name="orders", type="pubsub.jetstream", metadata={"natsURL": URL, **metadata}, source="test"
        )
        component = registry.create(spec)
        made.append(component)
        return component

    yield make
    for component in made:
        await component.close()


async def wait_until(predicate: Callable[[], bool], limit_s: float) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - handlers make it true, no event to wait on
            await asyncio.sleep(0.02)


async def test_a_backlog_bigger_than_the_handlers_is_delivered_once(
    topic: str, jetstream: Callable[..., PubSub]
) -> None:
    """6 messages waiting, 2 handlers of 0.6 s each (well within ackWait 1 s): the old loop pulled all 6 at
    once, 4 waited for a handler past their ackWait and came back a second time."""
    pubsub = jetstream(ackWait="1s")
    await pubsub.init()
    for n in range(6):
        await pubsub.publish(topic, str(n).encode(), {})
    handled: Counter[bytes] = Counter()

    async def slow(message: Message) -> None:
        await asyncio.sleep(0.6)
        handled[message.data] += 1

    await pubsub.subscribe(topic, slow, SubscribeOptions(group="app", max_concurrency=2))
    await wait_until(lambda: len(handled) == 6, limit_s=15)
    await asyncio.sleep(1.5)  # a redelivery (ackWait 1 s, then a 0.6 s handler) would land in this window
    assert dict(handled) == {str(n).encode(): 1 for n in range(6)}, "each message handled exactly once"


async def test_trickling_messages_with_a_short_ack_wait_are_delivered_once(
    topic: str, jetstream: Callable[..., PubSub]
) -> None:
    """Small bursts between idle spells longer than a pull request's wait (1 s): no pulled message may be
    kept back past its ackWait (0.5 s). nats-py's fetch(64) used to keep the first messages of a burst
    until its 1 s timeout now and then (a stale pull request still open), and they came back twice."""
    replicas = [jetstream(ackWait="500ms"), jetstream(ackWait="500ms")]
    handled: Counter[bytes] = Counter()

    async def record(message: Message) -> None:
        handled[message.data] += 1

    for replica in replicas:
        await replica.init()
        await replica.subscribe(topic, record, SubscribeOptions(group="app"))
    sent = [str(n).encode() for n in range(30)]
    for n, payload in enumerate(sent):
        await replicas[0].publish(topic, payload, {})
        await asyncio.sleep(0.05 if n % 3 else 1.2)  # small bursts, then longer than a pull's wait
    await wait_until(lambda: set(handled) == set(sent), limit_s=15)
    await asyncio.sleep(1.0)
    assert {p: c for p, c in handled.items() if c != 1} == {}, "each message handled exactly once"


async def test_a_handler_that_fails_or_outlives_ack_wait_still_gets_the_message_again(
    topic: str, jetstream: Callable[..., PubSub]
) -> None:
    """At-least-once is kept: a failure is retried, and so is a handler that never answers."""
    pubsub = jetstream(ackWait="1s")
    await pubsub.init()
    attempts: Counter[bytes] = Counter()

    async def flaky(message: Message) -> None:
        attempts[message.data] += 1
        if message.data == b"fails" and attempts[message.data] == 1:
            raise RuntimeError("first attempt fails")
        if message.data == b"hangs" and attempts[message.data] == 1:
            await asyncio.Event().wait()

    await pubsub.subscribe(topic, flaky, SubscribeOptions(group="app", max_concurrency=4))
    await pubsub.publish(topic, b"fails", {})
    await pubsub.publish(topic, b"hangs", {})
    await wait_until(lambda: attempts[b"fails"] >= 2 and attempts[b"hangs"] >= 2, limit_s=10)
