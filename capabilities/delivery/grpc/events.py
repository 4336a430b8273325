"""A broker message -> the TopicEventRequest gRPC subscribers receive (daprd postman/grpc, in Python).

The CloudEvent envelope is parsed with capabilities.blocks.pubsub.envelope (written once for HTTP and gRPC);
standard attributes go to their fields, every other attribute to `extensions`, payload bytes to `data`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import struct_pb2

from capabilities.blocks.pubsub import envelope
from capabilities.blocks.pubsub.contract import Message

_STANDARD = {
    "id",
    "source",
    "type",
    "specversion",
    "datacontenttype",
    "data",
    "data_base64",
    "topic",
    "pubsubname",
}

SUCCESS = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus.SUCCESS
RETRY = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus.RETRY
DROP = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus.DROP


@dataclass(frozen=True)
class Event:
    """One message ready for delivery: its CloudEvent form and whether it has already expired."""

    cloud_event: dict[str, Any]
    expired: bool


def to_cloud_event(message: Message, *, pubsub_name: str, raw_payload: bool) -> Event:
    """The CloudEvent a subscriber sees: the published envelope, or a wrapper around raw bytes."""
    ce: dict[str, Any] | None = None
    if not raw_payload:
        try:
            parsed = json.loads(message.data)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and "specversion" in parsed:
            ce = parsed
    if ce is None:  # rawPayload subscription, or a publisher that bypassed Dapr
        ce = envelope.from_raw_payload(message.data, topic=message.topic, pubsub_name=pubsub_name)
    return Event(ce, envelope.has_expired(ce))


def _extensions(ce: dict[str, Any]) -> struct_pb2.Struct:
    ext = struct_pb2.Struct()
    for key, value in ce.items():
        if key in _STANDARD:
            continue
        try:
            ext.update({key: value})
        except (ValueError, TypeError):
            ext.update({key: str(value)})
    return ext


def topic_event_request(
    ce: dict[str, Any], *, topic: str, pubsub_name: str, path: str = ""
) -> appcallback_pb2.TopicEventRequest:
    return appcallback_pb2.TopicEventRequest(
        id=str(ce.get("id") or uuid.uuid4()),
        source=str(ce.get("source", "")),
        type=str(ce.get("type", "")),
        spec_version=str(ce.get("specversion", envelope.SPEC_VERSION)),
        data_content_type=str(ce.get("datacontenttype", "")),
        data=envelope.data_bytes(ce),
        topic=topic,
        pubsub_name=pubsub_name,
        path=path,
        extensions=_extensions(ce),
    )


def status_name(status: int) -> str:
    return appcallback_pb2.TopicEventResponse.TopicEventResponseStatus.Name(status)


def bulk_entry(
    entry_id: str, ce: dict[str, Any], *, raw_payload: bool
) -> appcallback_pb2.TopicEventBulkRequestEntry:
    """One entry of a TopicEventBulkRequest: raw bytes for rawPayload subscriptions, else the CloudEvent."""
    if raw_payload:
        return appcallback_pb2.TopicEventBulkRequestEntry(
            entry_id=entry_id,
            bytes=envelope.data_bytes(ce),
            content_type=str(ce.get("datacontenttype") or "application/octet-stream"),
        )
    cloud_event = appcallback_pb2.TopicEventCERequest(
        id=str(ce.get("id") or entry_id),
        source=str(ce.get("source", "")),
        type=str(ce.get("type", "")),
        spec_version=str(ce.get("specversion", envelope.SPEC_VERSION)),
        data_content_type=str(ce.get("datacontenttype", "")),
        data=envelope.data_bytes(ce),
        extensions=_extensions(ce),
    )
    return appcallback_pb2.TopicEventBulkRequestEntry(
        entry_id=entry_id, cloud_event=cloud_event, content_type=envelope.CLOUDEVENTS_CONTENT_TYPE
    )
