"""One subscription's message handler: envelope -> route -> app, with retries and the dead-letter topic.

Retry rules (Dapr pubsub-deadletter.md, resiliency targets): with an inbound resiliency policy on the
pubsub component, the policy runs the delivery; when it gives up the message goes to `deadLetterTopic`
(if set) and is acked, else it is left un-acked for the broker to redeliver. Without a policy, a
subscription with a dead-letter topic dead-letters on the first failure; one without retries with a
bounded exponential backoff before handing the message back to the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from capabilities import metrics
from capabilities.blocks.pubsub import envelope
from capabilities.blocks.pubsub.contract import Message, PubSub
from capabilities.delivery import postman
from capabilities.delivery.postman import RetryDelivery, Verdict
from capabilities.delivery.subscriptions import Subscription
from capabilities.tracing import TRACING, trace_carrier

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 4
DEFAULT_INITIAL_BACKOFF_S = 0.05
DEFAULT_MAX_BACKOFF_S = 2.0


def to_cloud_event(message: Message, sub: Subscription) -> dict[str, Any]:
    """The event as the app sees it: the published envelope, or a data_base64 wrapper for raw payloads."""
    if not sub.raw_payload:
        try:
            ce = json.loads(message.data)
        except (ValueError, UnicodeDecodeError):
            ce = None
        if isinstance(ce, dict) and "specversion" in ce:
            return ce
    ce = envelope.from_raw_payload(message.data, topic=message.topic, pubsub_name=sub.pubsub_name)
    for key in ("traceparent", "tracestate"):
        if message.metadata.get(key):
            ce[key] = message.metadata[key]
    return ce


async def default_backoff(attempt: Callable[[], Awaitable[Any]]) -> Any:
    delay = DEFAULT_INITIAL_BACKOFF_S
    for tries_left in range(DEFAULT_RETRIES, -1, -1):
        try:
            return await attempt()
        except RetryDelivery:
            if tries_left == 0:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, DEFAULT_MAX_BACKOFF_S)
    raise AssertionError("unreachable")


class TopicHandler:
    """Callable given to PubSub.subscribe: raising = not acked (the broker redelivers)."""

    def __init__(self, runtime: Runtime, sub: Subscription, pubsub: PubSub, *, timeout_s: float = 60.0):
        self.runtime = runtime
        self.sub = sub
        self.pubsub = pubsub
        self.timeout_s = timeout_s
        self.batcher = BulkBatcher(self) if sub.bulk.enabled else None
        self.delivered = 0
        self.dead_lettered = 0

    def _policy(self) -> Any | None:
        resiliency = getattr(self.runtime, "resiliency", None)
        if resiliency is None:
            return None
        policy = resiliency.for_component(self.sub.pubsub_name, "inbound")
        return None if getattr(policy, "is_noop", False) else policy

    async def __call__(self, message: Message) -> None:
        ce = to_cloud_event(message, self.sub)
        if envelope.has_expired(ce):
            log.warning(
                "dropping expired event %s on %s (expiration %s)",
                ce.get("id"),
                message.topic,
                ce.get("expiration"),
            )
            return
        path = self.sub.route(ce)
        if path is None:
            log.warning(
                "event %s on %s matches no route and there is no default: dropped",
                ce.get("id"),
                message.topic,
            )
            return

        async def attempt() -> Verdict:
            try:
                if self.batcher is not None:
                    verdict = await self.batcher.submit(path, ce)
                else:
                    # a CONSUMER span, child of the publish span in the CloudEvent (no-op untraced)
                    with TRACING.span(
                        f"pubsub/{message.topic}", "CONSUMER", trace_carrier(ce), app=self.runtime.app_id
                    ) as trace:
                        verdict = await postman.deliver(
                            self.runtime.app_channel, path, ce, timeout_s=self.timeout_s, trace=trace
                        )
            except Exception:
                self._count("retry")
                raise
            self._count("drop" if verdict is Verdict.DROP else "success")
            return verdict

        policy = self._policy()
        try:
            if policy is not None:
                await policy.run(attempt)
            elif self.sub.dead_letter_topic:
                await attempt()  # no retry policy: the first failure dead-letters (Dapr docs)
            else:
                await default_backoff(attempt)
            self.delivered += 1
        except Exception as exc:
            if not self.sub.dead_letter_topic:
                raise  # un-acked: the broker redelivers later
            log.warning("event %s on %s failed (%s): sending to dead-letter topic %s",
                        ce.get("id"), message.topic, exc, self.sub.dead_letter_topic)  # fmt: skip
            await self._dead_letter(message)

    def _count(self, outcome: str) -> None:
        metrics.record_delivery(self.runtime.app_id, self.sub.pubsub_name, self.sub.topic, outcome)

    async def _dead_letter(self, message: Message) -> None:
        """Publish the original bytes to the dead-letter topic; if that fails too, leave it un-acked."""
        await self.pubsub.publish(self.sub.dead_letter_topic, message.data, dict(message.metadata))
        self.dead_lettered += 1

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()


class BulkBatcher:
    """Collects events per route path; flushes at maxMessagesCount or after maxAwaitDurationMs."""

    def __init__(self, handler: TopicHandler):
        self.handler = handler
        self.max_count = handler.sub.bulk.max_messages_count
        self.max_wait_s = handler.sub.bulk.max_await_duration_ms / 1000
        self._pending: dict[str, list[tuple[str, dict[str, Any], asyncio.Future[Verdict]]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, path: str, ce: dict[str, Any]) -> Verdict:
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        batch = self._pending.setdefault(path, [])
        batch.append((str(uuid.uuid4()), ce, future))
        if len(batch) >= self.max_count:
            self._flush_soon(path)
        elif path not in self._timers:
            self._timers[path] = asyncio.get_running_loop().call_later(
                self.max_wait_s, self._flush_soon, path
            )
        verdict = await future
        if verdict is Verdict.RETRY:
            raise RetryDelivery(
                f"bulk entry for event {ce.get('id')}: app asked to retry (or gave no status)"
            )
        return verdict

    def _flush_soon(self, path: str) -> None:
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(path, [])
        if batch:
            task = asyncio.create_task(self._flush(path, batch), name=f"bulk:{self.handler.sub.topic}")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(
        self, path: str, batch: list[tuple[str, dict[str, Any], asyncio.Future[Verdict]]]
    ) -> None:
        sub = self.handler.sub
        try:
            verdicts = await postman.deliver_bulk(
                self.handler.runtime.app_channel,
                path,
                [(entry_id, ce) for entry_id, ce, _ in batch],
                pubsub_name=sub.pubsub_name,
                topic=sub.topic,
                timeout_s=self.handler.timeout_s,
            )
        except Exception as exc:  # never leave a waiter hanging
            log.warning("bulk delivery on %s failed: %s", sub.topic, exc)
            verdicts = {}
        for entry_id, _, future in batch:
            if not future.done():
                future.set_result(verdicts.get(entry_id, Verdict.RETRY))

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for batch in self._pending.values():
            for _, _, future in batch:
                if not future.done():
                    future.cancel()
        self._pending.clear()
        for task in list(self._flushes):
            task.cancel()
