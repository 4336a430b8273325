"""Pub/sub delivery to a gRPC app: ListTopicSubscriptions, then OnTopicEvent per message.

Outcome of one delivery (daprd pkg/runtime/subscription/postman/grpc):
- SUCCESS (or an empty reply) acks; DROP acks and logs; UNIMPLEMENTED from the app = drop (non-retriable);
- RETRY, any other gRPC error or an unknown status = failure: the message goes to the dead-letter topic when
  the subscription has one, else the handler raises and the broker redelivers.
Bulk-enabled subscriptions batch messages into OnBulkTopicEvent calls (bulk.py), same per-entry outcomes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2

from capabilities.blocks.pubsub.contract import Message, PubSub, SubscribeOptions, Unsubscribe
from capabilities.delivery.grpc import events
from capabilities.delivery.grpc.bulk import BulkSender, GrpcBulkBatcher
from capabilities.delivery.grpc.channel import AppCallbackChannel
from capabilities.delivery.postman import RetryDelivery, Verdict
from capabilities.tracing import TRACING, grpc_trace_metadata, trace_carrier

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The app did not process the event; raising tells the broker to redeliver."""


@dataclass(frozen=True)
class Rule:
    match: str
    path: str


@dataclass(frozen=True)
class TopicSubscription:
    pubsub_name: str
    topic: str
    metadata: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    default_path: str = ""
    dead_letter_topic: str = ""
    bulk_enabled: bool = False
    bulk_max_messages: int = 100
    bulk_max_await_ms: int = 1000

    @property
    def raw_payload(self) -> bool:
        return self.metadata.get("rawPayload", "").lower() == "true"

    def to_metadata(self) -> dict[str, Any]:
        """The /v1.0/metadata `subscriptions[]` entry, as daprd lists an app's ListTopicSubscriptions."""
        rules = [{"match": r.match, "path": r.path} for r in self.rules]
        if self.default_path:
            rules.append({"match": "", "path": self.default_path})
        entry: dict[str, Any] = {
            "pubsubname": self.pubsub_name,
            "topic": self.topic,
            "rules": {"rules": rules},
            "type": "PROGRAMMATIC",
        }
        if self.dead_letter_topic:
            entry["deadLetterTopic"] = self.dead_letter_topic
        if self.metadata:
            entry["metadata"] = dict(self.metadata)
        return entry

    @classmethod
    def from_proto(cls, sub: appcallback_pb2.TopicSubscription) -> TopicSubscription:
        bulk = sub.bulk_subscribe
        return cls(
            pubsub_name=sub.pubsub_name,
            topic=sub.topic,
            metadata=dict(sub.metadata),
            rules=tuple(Rule(r.match, r.path) for r in sub.routes.rules),
            default_path=sub.routes.default,
            dead_letter_topic=sub.dead_letter_topic,
            bulk_enabled=bulk.enabled,
            bulk_max_messages=bulk.max_messages_count or 100,
            bulk_max_await_ms=bulk.max_await_duration_ms or 1000,
        )


def choose_path(sub: TopicSubscription, ce: dict[str, Any]) -> str:
    """The route for this event: the first rule whose CEL `match` holds, else the default path.

    Rules are evaluated by the pub/sub delivery's CEL matcher when the messaging helper provides one;
    without it only rules with an empty match (always true) are considered.
    """
    matcher = _cel_matcher()
    for rule in sub.rules:
        if not rule.match:
            return rule.path
        if matcher is not None:
            try:
                if matcher(rule.match, ce):
                    return rule.path
            except Exception as exc:  # a broken expression must not stop delivery
                log.warning("route match %r failed on event %s: %s", rule.match, ce.get("id"), exc)
    return sub.default_path


def _cel_matcher() -> Any:
    try:
        from capabilities.delivery.routing import matches  # type: ignore[import-not-found]
    except ImportError:
        return None
    return matches


async def deliver_event(
    channel: AppCallbackChannel, sub: TopicSubscription, message: Message, *, timeout_s: float, app: str = ""
) -> int:
    """Send one message to the app; return the final status (SUCCESS/DROP) or raise DeliveryFailed.

    Traced as the HTTP delivery is: a CONSUMER span of `app`, child of the publish span in the CloudEvent,
    whose context reaches the app as traceparent/tracestate metadata."""
    event = events.to_cloud_event(message, pubsub_name=sub.pubsub_name, raw_payload=sub.raw_payload)
    if event.expired:
        log.info("dropping expired event %s on topic %s", event.cloud_event.get("id"), sub.topic)
        return events.DROP
    request = events.topic_event_request(
        event.cloud_event,
        topic=sub.topic,
        pubsub_name=sub.pubsub_name,
        path=choose_path(sub, event.cloud_event),
    )
    with TRACING.span(f"pubsub/{sub.topic}", "CONSUMER", trace_carrier(event.cloud_event), app=app) as trace:
        return await _call_app(channel, request, sub, timeout_s, grpc_trace_metadata(trace))


async def _call_app(
    channel: AppCallbackChannel,
    request: Any,
    sub: TopicSubscription,
    timeout_s: float,
    trace: tuple[tuple[str, Any], ...],
) -> int:
    try:
        reply = await channel.call(channel.app.OnTopicEvent, request, timeout_s=timeout_s, trace=trace)
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            log.warning("non-retriable error from app for event %s: %s", request.id, err.details())
            return events.DROP
        raise DeliveryFailed(
            f"error returned from app while processing event {request.id}: {err.details()}"
        ) from err
    if reply.status == events.SUCCESS:
        return events.SUCCESS
    if reply.status == events.DROP:
        log.warning("app dropped event %s on topic %s", request.id, sub.topic)
        return events.DROP
    raise DeliveryFailed(f"app asked to retry event {request.id} ({events.status_name(reply.status)})")


async def deliver_in_bulk(batcher: GrpcBulkBatcher, sub: TopicSubscription, message: Message) -> int:
    """Queue one message into the subscription's next OnBulkTopicEvent batch; its entry's status decides."""
    event = events.to_cloud_event(message, pubsub_name=sub.pubsub_name, raw_payload=sub.raw_payload)
    if event.expired:
        log.info("dropping expired event %s on topic %s", event.cloud_event.get("id"), sub.topic)
        return events.DROP
    try:
        verdict = await batcher.submit(choose_path(sub, event.cloud_event), event.cloud_event)
    except RetryDelivery as retry:
        raise DeliveryFailed(str(retry)) from retry
    return events.DROP if verdict is Verdict.DROP else events.SUCCESS


class TopicDelivery:
    """Subscribes every TopicSubscription to its broker and delivers its messages to the app."""

    def __init__(self, runtime: Runtime, channel: AppCallbackChannel, *, timeout_s: float = 60.0):
        self.runtime = runtime
        self.channel = channel
        self.timeout_s = timeout_s
        # (pubsub, topic) -> (component instance, unsubscribe, subscription): re-done when any of them changes
        self.active: dict[tuple[str, str], tuple[PubSub, Unsubscribe, TopicSubscription]] = {}
        self.batchers: dict[tuple[str, str], GrpcBulkBatcher] = {}  # bulk-enabled subscriptions only
        self.bulk_sender = BulkSender(channel, timeout_s=timeout_s)

    @property
    def subscribed(self) -> list[TopicSubscription]:
        return [sub for _, _, sub in self.active.values()]

    def is_current(self, sub: TopicSubscription) -> bool:
        """Subscribed with this definition to the pubsub component instance loaded now."""
        active = self.active.get((sub.pubsub_name, sub.topic))
        if active is None or active[2] != sub:
            return False
        return self.runtime.components("pubsub").get(sub.pubsub_name) is active[0]

    async def subscribe(self, sub: TopicSubscription) -> None:
        key = (sub.pubsub_name, sub.topic)
        if key in self.active:
            await self.unsubscribe(key)
        pubsub = self.runtime.component("pubsub", sub.pubsub_name)
        batcher = self._batcher(sub) if sub.bulk_enabled else None

        async def deliver(message: Message) -> int:
            if batcher is not None:
                return await deliver_in_bulk(batcher, sub, message)
            return await deliver_event(
                self.channel, sub, message, timeout_s=self.timeout_s, app=self.runtime.app_id
            )

        async def handler(message: Message) -> None:
            try:
                await self._with_resiliency(sub, lambda: deliver(message))
            except DeliveryFailed as failure:
                if not sub.dead_letter_topic:
                    raise
                log.warning("%s: sending it to dead-letter topic %s", failure, sub.dead_letter_topic)
                await pubsub.publish(sub.dead_letter_topic, message.data, dict(message.metadata))

        # A batch only fills when enough handlers wait on it at once.
        concurrency = max(16, sub.bulk_max_messages) if sub.bulk_enabled else 16
        options = SubscribeOptions(
            group=self.runtime.app_id, metadata=dict(sub.metadata), max_concurrency=concurrency
        )
        try:
            unsubscribe = await pubsub.subscribe(sub.topic, handler, options)
        except Exception:
            await self._close_batcher(key)
            raise
        self.active[key] = (pubsub, unsubscribe, sub)
        log.info("gRPC app subscribed to %s/%s", sub.pubsub_name, sub.topic)

    async def _with_resiliency(self, sub: TopicSubscription, fn: Any) -> Any:
        resiliency = getattr(self.runtime, "resiliency", None)
        if resiliency is None:
            return await fn()
        return await resiliency.for_component(sub.pubsub_name, "inbound").run(fn)

    def _batcher(self, sub: TopicSubscription) -> GrpcBulkBatcher:
        batcher = GrpcBulkBatcher(
            self.bulk_sender,
            pubsub_name=sub.pubsub_name,
            topic=sub.topic,
            max_messages=sub.bulk_max_messages,
            max_await_ms=sub.bulk_max_await_ms,
            raw_payload=sub.raw_payload,
        )
        self.batchers[(sub.pubsub_name, sub.topic)] = batcher
        return batcher

    async def _close_batcher(self, key: tuple[str, str]) -> None:
        batcher = self.batchers.pop(key, None)
        if batcher is not None:
            await batcher.close()

    async def unsubscribe(self, key: tuple[str, str]) -> None:
        _, unsubscribe, _ = self.active.pop(key)
        try:
            await unsubscribe()
        except Exception as exc:
            log.warning("unsubscribe from %s/%s failed: %s", *key, exc)
        await self._close_batcher(key)

    async def close(self) -> None:
        for key in reversed(list(self.active)):
            await self.unsubscribe(key)
