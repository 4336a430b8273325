"""pubsub.in-memory: the oracle backend (no infrastructure), with consumer groups and redelivery.

Each (topic, group) has one queue; every subscription of that group runs workers on the shared queue, so
replicas split the messages while each group sees every message. A handler that raises gets the message
back after `redeliverDelayMs`. Nothing survives the process, so it does not declare DURABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from capabilities.blocks.pubsub.contract import Feature, Handler, Message, SubscribeOptions, Unsubscribe
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

log = logging.getLogger(__name__)

# Shared by every component instance in the process, like the broker of a real backend: two runtimes
# (two app ids) in one test process publish and subscribe through the same topics.
_BROKER: dict[str, dict[str, asyncio.Queue[Message]]] = {}
_ids = itertools.count(1)


@register("pubsub.in-memory")
class InMemoryPubSub:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self._redeliver_delay = float(spec.metadata.get("redeliverDelayMs", "50")) / 1000
        self._tasks: set[asyncio.Task[None]] = set()

    async def init(self) -> None:
        return None

    def features(self) -> set[str]:
        return {Feature.CONSUMER_GROUPS, Feature.REDELIVERY}

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        message = Message(topic, data, dict(metadata), str(next(_ids)))
        for queue in _BROKER.get(topic, {}).values():
            queue.put_nowait(message)

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        queue = _BROKER.setdefault(topic, {}).setdefault(options.group, asyncio.Queue())
        workers = {
            asyncio.create_task(self._work(queue, handler), name=f"inmem:{topic}:{options.group}")
            for _ in range(max(1, options.max_concurrency))
        }
        self._tasks |= workers

        async def unsubscribe() -> None:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks -= workers

        return unsubscribe

    async def _work(self, queue: asyncio.Queue[Message], handler: Handler) -> None:
        while True:
            message = await queue.get()
            try:
                await handler(message)
            except asyncio.CancelledError:
                queue.put_nowait(message)  # not acked: another replica (or a restart) gets it
                raise
            except Exception as exc:
                log.debug("in-memory: message %s on %s not acked: %s", message.message_id, message.topic, exc)
                self._requeue_later(queue, message)

    def _requeue_later(self, queue: asyncio.Queue[Message], message: Message) -> None:
        asyncio.get_running_loop().call_later(self._redeliver_delay, queue.put_nowait, message)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
