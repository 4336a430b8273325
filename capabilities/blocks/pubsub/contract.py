"""The pub/sub contract every broker backend implements (Dapr components-contrib pubsub/pubsub.go, in Python).

A backend moves opaque bytes: the CloudEvents envelope is built once in envelope.py, never in a backend.
A subscription handler is an async callable; returning means "acked", raising means "not acked, redeliver".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Feature(StrEnum):
    """Optional capabilities a backend declares in features(); the conformance suite checks them."""

    BULK_PUBLISH = "BULK_PUBLISH"  # implements BulkPublisher natively
    CONSUMER_GROUPS = "CONSUMER_GROUPS"  # replicas sharing a group split the messages of a topic
    DURABLE = "DURABLE"  # an un-acked message survives the subscriber's death and is redelivered
    REDELIVERY = "REDELIVERY"  # a handler that raises gets the message again (without a restart)
    MESSAGE_TTL = "MESSAGE_TTL"  # the broker itself expires messages (ttlInSeconds)


@dataclass(frozen=True)
class Message:
    """One message as handed to a subscription handler."""

    topic: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    message_id: str = ""  # broker id (stream entry id, delivery tag...), for logs only


Handler = Callable[[Message], Awaitable[None]]
Unsubscribe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SubscribeOptions:
    """group: the consumer group / queue; Dapr uses the app id so that replicas share a topic."""

    group: str
    metadata: dict[str, str] = field(default_factory=dict)
    max_concurrency: int = 16  # handlers running at once for this subscription


@dataclass(frozen=True)
class BulkEntry:
    entry_id: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class PubSub(Protocol):
    async def init(self) -> None: ...

    async def close(self) -> None:
        """Cancel every subscription (their tasks end) and release connections."""

    def features(self) -> set[str]: ...

    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None: ...

    async def subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Unsubscribe:
        """Start delivering messages of topic to handler; the returned callable stops this subscription."""


@runtime_checkable
class BulkPublisher(Protocol):
    async def bulk_publish(self, topic: str, entries: list[BulkEntry]) -> dict[str, str]:
        """Publish entries; return {entry_id: error text} for the entries that failed (empty = all ok)."""


class PubSubBackendError(Exception):
    """A broker-side failure (connection refused, timeout...); mapped to ERR_PUBSUB_PUBLISH_MESSAGE."""
