"""pubsub.redis redelivery: a consumer killed with SIGKILL leaves N entries pending in the group; a new
consumer of the same group reclaims all of them (XAUTOCLAIM) and handles each exactly once."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from capability_testkit import need_server

from capabilities.blocks.pubsub.contract import Message, SubscribeOptions
from capabilities.components.pubsub.redis import RedisStreamsPubSub
from capabilities.daprspec.component import ComponentSpec

REPO = Path(__file__).resolve().parents[3]
STRANDED = 40  # more than one XAUTOCLAIM batch would need if the batch were small; queueDepth below is 16

# The doomed subscriber: reads every entry into its pending list, never acks (the handler hangs), says
# how many it holds, then waits to be killed.
SUBSCRIBER = textwrap.dedent(
    """
    import asyncio, sys
    from capabilities.blocks.pubsub.contract import SubscribeOptions
    from capabilities.components.pubsub.redis import RedisStreamsPubSub
    from capabilities.daprspec.component import ComponentSpec

    async def main(topic: str, group: str, expected: int) -> None:
        spec = ComponentSpec("orders", "pubsub.redis", metadata={
            "redisHost": "127.0.0.1:6379", "queueDepth": "16",
            "processingTimeout": "1h", "redeliverInterval": "1h"})
        pubsub = RedisStreamsPubSub(spec)
        await pubsub.init()
        seen = 0
        hang = asyncio.Event()

        async def handler(message) -> None:
            nonlocal seen
            seen += 1
            if seen == expected:
                print("holding", seen, flush=True)
            await hang.wait()

        await pubsub.subscribe(topic, handler, SubscribeOptions(group=group, max_concurrency=1000))
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def spec(**metadata: str) -> ComponentSpec:
    return ComponentSpec("orders", "pubsub.redis", metadata={"redisHost": "127.0.0.1:6379", **metadata})


@pytest.mark.backend
async def test_killed_consumer_entries_are_redelivered_once_each(caplog: pytest.LogCaptureFixture) -> None:
    need_server("Redis", "127.0.0.1", 6379)
    caplog.set_level(logging.WARNING, logger="capabilities.components.pubsub.redis")
    topic, group = f"reclaim-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    publisher = RedisStreamsPubSub(spec())
    await publisher.init()
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBSCRIBER, topic, group, str(STRANDED),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    survivor = RedisStreamsPubSub(spec(processingTimeout="1s", redeliverInterval="500ms", queueDepth="16"))
    try:
        await publisher._ensure_group(topic, group)
        for n in range(STRANDED):
            await publisher.publish(topic, f"m{n}".encode(), {})
        assert doomed.stdout is not None
        line = await asyncio.wait_for(doomed.stdout.readline(), 30)
        assert line.split() == [b"holding", str(STRANDED).encode()]
        doomed.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), 10)
        pending = await publisher.client.xpending(topic, group)
        assert pending["pending"] == STRANDED

        deliveries: collections.Counter[str] = collections.Counter()
        all_seen = asyncio.Event()

        async def handler(message: Message) -> None:
            deliveries[message.message_id] += 1
            if len(deliveries) == STRANDED:
                all_seen.set()

        await survivor.init()
        await survivor.subscribe(topic, handler, SubscribeOptions(group=group))
        await asyncio.wait_for(all_seen.wait(), 30)
        # Several more reclaim cycles: an acked entry must not come back.
        for _ in range(50):
            await asyncio.sleep(0.1)
            if (await publisher.client.xpending(topic, group))["pending"] == 0:
                break
        await asyncio.sleep(2.5)
        assert set(deliveries.values()) == {1}, {k: v for k, v in deliveries.items() if v != 1}
        assert len(deliveries) == STRANDED
        assert (await publisher.client.xpending(topic, group))["pending"] == 0
        assert not [r for r in caplog.records if "reclaim" in r.getMessage()], caplog.text
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await asyncio.wait_for(doomed.wait(), 10)
        await survivor.close()
        await publisher.client.delete(topic)
        await publisher.close()
