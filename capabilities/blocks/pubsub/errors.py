"""The one place pub/sub failures become Dapr errors (codes from dapr pkg/api/errors/pubsub.go)."""

from __future__ import annotations

from capabilities.errors import DaprError


def publish_failed(pubsub_name: str, topic: str, exc: BaseException) -> DaprError:
    """A broker failure while publishing: 500 naming the component, topic and cause."""
    if isinstance(exc, DaprError):
        return exc
    reason = str(exc) or type(exc).__name__
    return DaprError(
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {pubsub_name}: {reason}",
        500,
        "INTERNAL",
    )


def topic_empty(pubsub_name: str) -> DaprError:
    return DaprError("ERR_TOPIC_EMPTY", f"topic is empty in pubsub {pubsub_name}", 404, "INVALID_ARGUMENT")


def pubsub_name_empty() -> DaprError:
    return DaprError("ERR_PUBSUB_EMPTY", "pubsub name is empty", 404, "INVALID_ARGUMENT")


def malformed_events(pubsub_name: str, topic: str, reason: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_EVENTS_SER",
        f"error when unmarshaling the request for topic {topic} pubsub {pubsub_name}: {reason}",
        400,
        "INVALID_ARGUMENT",
    )


def bad_metadata(pubsub_name: str, reason: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_REQUEST_METADATA",
        f"failed deserializing metadata for pubsub {pubsub_name}: {reason}",
        400,
        "INVALID_ARGUMENT",
    )
