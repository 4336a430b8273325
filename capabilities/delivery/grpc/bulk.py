"""Bulk delivery to a gRPC app: batches of messages sent with AppCallback.OnBulkTopicEvent.

Batching (flush at maxMessagesCount or after maxAwaitDurationMs, per route path) is the HTTP delivery's
BulkBatcher; only the flush differs. Per-entry statuses: SUCCESS acks, DROP acks (logged), RETRY, a missing
entry, an unknown status or a gRPC error fail that entry so it is retried / dead-lettered like a single event.
The official `dapr.ext.grpc` App serves both AppCallback.OnBulkTopicEvent and the deprecated
AppCallbackAlpha.OnBulkTopicEventAlpha1 (what daprd calls); we call the stable one and fall back to the alpha
one when the app answers UNIMPLEMENTED. UNIMPLEMENTED from both = non-retriable: the entries are dropped.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2

from capabilities.delivery.grpc import events
from capabilities.delivery.grpc.channel import AppCallbackChannel
from capabilities.delivery.http.topics import BulkBatcher
from capabilities.delivery.postman import Verdict
from capabilities.delivery.subscriptions import BulkSubscribe

log = logging.getLogger(__name__)

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"

_VERDICTS = {events.SUCCESS: Verdict.SUCCESS, events.RETRY: Verdict.RETRY, events.DROP: Verdict.DROP}

Entries = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class _BatchSettings:
    """The part of a subscription BulkBatcher reads (`sub.bulk`, `sub.topic`)."""

    topic: str
    bulk: BulkSubscribe


@dataclass(frozen=True)
class _BatchOwner:
    sub: _BatchSettings


class BulkSender:
    """Sends one batch to the app and returns each entry's verdict; remembers which service answers."""

    def __init__(self, channel: AppCallbackChannel, *, timeout_s: float):
        self.channel = channel
        self.timeout_s = timeout_s
        self.use_alpha = False  # set once the app said UNIMPLEMENTED to AppCallback.OnBulkTopicEvent

    async def send(
        self, entries: Entries, *, pubsub_name: str, topic: str, path: str, raw_payload: bool
    ) -> dict[str, Verdict]:
        request = appcallback_pb2.TopicEventBulkRequest(
            id=str(uuid.uuid4()),
            entries=[events.bulk_entry(entry_id, ce, raw_payload=raw_payload) for entry_id, ce in entries],
            topic=topic,
            pubsub_name=pubsub_name,
            type=BULK_EVENT_TYPE,
            path=path,
        )
        try:
            reply = await self._call(request)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.warning("non-retriable error from app for bulk on %s: %s", topic, err.details())
                return {entry_id: Verdict.DROP for entry_id, _ in entries}
            log.warning("bulk delivery of %d events on %s failed: %s", len(entries), topic, err.details())
            return {entry_id: Verdict.RETRY for entry_id, _ in entries}
        verdicts = {entry_id: Verdict.RETRY for entry_id, _ in entries}  # no status = retry
        for status in reply.statuses:
            if status.entry_id in verdicts:
                verdicts[status.entry_id] = _VERDICTS.get(status.status, Verdict.RETRY)
        dropped = [entry_id for entry_id, verdict in verdicts.items() if verdict is Verdict.DROP]
        if dropped:
            log.warning("app dropped %d bulk entries on topic %s", len(dropped), topic)
        return verdicts

    async def _call(self, request: appcallback_pb2.TopicEventBulkRequest) -> Any:
        if not self.use_alpha:
            try:
                return await self.channel.call(
                    self.channel.app.OnBulkTopicEvent, request, timeout_s=self.timeout_s
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info("app lacks AppCallback.OnBulkTopicEvent: trying OnBulkTopicEventAlpha1")
        reply = await self.channel.call(
            self.channel.alpha.OnBulkTopicEventAlpha1, request, timeout_s=self.timeout_s
        )
        self.use_alpha = True
        return reply


class GrpcBulkBatcher(BulkBatcher):
    """BulkBatcher whose flush goes over gRPC. submit(path, ce) -> SUCCESS/DROP, or raises RetryDelivery."""

    def __init__(
        self,
        sender: BulkSender,
        *,
        pubsub_name: str,
        topic: str,
        max_messages: int,
        max_await_ms: int,
        raw_payload: bool,
    ):
        bulk = BulkSubscribe(True, max(1, max_messages), max(0, max_await_ms))
        super().__init__(_BatchOwner(_BatchSettings(topic, bulk)))  # type: ignore[arg-type]
        self.sender = sender
        self.pubsub_name = pubsub_name
        self.topic = topic
        self.raw_payload = raw_payload

    async def _flush(self, path: str, batch: list[tuple[str, dict[str, Any], Any]]) -> None:
        try:
            verdicts = await self.sender.send(
                [(entry_id, ce) for entry_id, ce, _ in batch],
                pubsub_name=self.pubsub_name,
                topic=self.topic,
                path=path,
                raw_payload=self.raw_payload,
            )
        except Exception as exc:  # never leave a waiter hanging
            log.warning("bulk delivery on %s failed: %s", self.topic, exc)
            verdicts = {}
        for entry_id, _, future in batch:
            if not future.done():
                future.set_result(verdicts.get(entry_id, Verdict.RETRY))
