"""Pub/sub throughput: publish (CloudEvent envelope + broker) -> delivered to an in-process consumer.

Run: .venv/bin/python bench/pubsub_bench.py [--messages 20000] [--backends in-memory,redis]
One process, one event loop (one core). The consumer parses each CloudEvent and counts it, so the
figure covers envelope build, broker round trip, subscription read loop and envelope parse; it does not
include the HTTP hop to an app. Goal: >= 5,000 msg/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

from capabilities import registry
from capabilities.blocks.pubsub import service
from capabilities.blocks.pubsub.contract import Message, SubscribeOptions
from capabilities.daprspec.component import ComponentSpec

METADATA = {
    "in-memory": {},
    "redis": {"redisHost": "127.0.0.1:6379", "queueDepth": "500"},
    "jetstream": {"natsURL": "nats://127.0.0.1:4222", "pullBatch": "256"},
}
WINDOW = 256  # publishes in flight at once


async def run(backend: str, messages: int) -> float:
    component = registry.create(
        ComponentSpec(name="bench", type=f"pubsub.{backend}", metadata=METADATA[backend])
    )
    await component.init()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    done = asyncio.Event()
    received = 0

    async def consumer(message: Message) -> None:
        nonlocal received
        json.loads(message.data)  # what delivery does first with every message
        received += 1
        if received >= messages:
            done.set()

    await component.subscribe(topic, consumer, SubscribeOptions(group="bench", max_concurrency=64))
    await asyncio.sleep(0.3)
    payload = json.dumps({"orderId": 1, "item": "widget", "qty": 3}).encode()

    async def publish_one() -> None:
        req = service.PublishRequest(
            pubsub_name="bench", topic=topic, data=payload, content_type="application/json", source="bench"
        )
        await service.publish(component, req)

    start = time.perf_counter()
    for offset in range(0, messages, WINDOW):
        await asyncio.gather(*(publish_one() for _ in range(min(WINDOW, messages - offset))))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    await component.close()
    if backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis()
        await client.delete(topic)
        await client.aclose()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--backends", default="in-memory,redis")
    args = parser.parse_args()
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    for backend in args.backends.split(","):
        rate = asyncio.run(run(backend, args.messages))
        verdict = "ok" if rate >= 5000 else "BELOW GOAL"
        print(
            f"{backend:10s} {args.messages} messages publish->delivered: {rate:,.0f} msg/s "
            f"({verdict}, goal 5,000)"
        )


if __name__ == "__main__":
    main()
