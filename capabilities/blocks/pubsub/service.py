"""Publish logic shared by the HTTP and gRPC APIs: envelope, TTL, broker call, error mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from capabilities import metrics
from capabilities.blocks.pubsub import defaults, envelope, errors
from capabilities.blocks.pubsub.contract import BulkEntry, BulkPublisher, Feature, PubSub
from capabilities.tracing import TRACING, has_current_span


@dataclass(frozen=True)
class PublishRequest:
    pubsub_name: str
    topic: str
    data: bytes
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the publishing app id
    traceparent: str = ""
    tracestate: str = ""


def is_raw(metadata: dict[str, str]) -> bool:
    return metadata.get("rawPayload", "").lower() == "true"


def build_payload(req: PublishRequest, component_features: set[str]) -> bytes:
    """The bytes put on the broker: the raw body (rawPayload) or a CloudEvent JSON document."""
    envelope.parse_ttl(req.metadata)  # reject a bad ttlInSeconds even for raw payloads
    if is_raw(req.metadata):
        return req.data
    if envelope.is_cloudevent_content_type(req.content_type):
        ce = envelope.from_cloudevent(
            req.data,
            topic=req.topic,
            pubsub_name=req.pubsub_name,
            traceparent=req.traceparent,
            tracestate=req.tracestate,
        )
    else:
        ce = envelope.new_envelope(
            data=req.data,
            topic=req.topic,
            pubsub_name=req.pubsub_name,
            source=req.source,
            content_type=req.content_type,
            traceparent=req.traceparent,
            tracestate=req.tracestate,
        )
    envelope.apply_overrides(ce, req.metadata)
    if Feature.MESSAGE_TTL not in component_features:
        envelope.apply_ttl(ce, req.metadata)  # Dapr handles TTL itself only when the broker cannot
    return envelope.encode(ce)


async def publish(pubsub: PubSub, req: PublishRequest) -> None:
    if not req.topic:
        raise errors.topic_empty(req.pubsub_name)
    if not TRACING.enabled_for(req.source):
        return await _publish(pubsub, req)
    # a PRODUCER span, child of the API call's span (HTTP) or of the request's traceparent (gRPC); the
    # CloudEvent carries the span's traceparent, as daprd does, so the delivery continues this trace
    carrier = None if has_current_span() else {"traceparent": req.traceparent, "tracestate": req.tracestate}
    with TRACING.span(
        f"pubsub/{req.topic}", "PRODUCER", carrier, app=req.source, pubsub=req.pubsub_name
    ) as headers:
        traced = replace(
            req, traceparent=headers.get("traceparent", ""), tracestate=headers.get("tracestate", "")
        )
        await _publish(pubsub, traced)


async def _publish(pubsub: PubSub, req: PublishRequest) -> None:
    payload = build_payload(req, pubsub.features())
    try:
        await pubsub.publish(req.topic, payload, req.metadata)
    except Exception as exc:
        metrics.record_publish(req.source, req.pubsub_name, req.topic, ok=False)
        raise errors.publish_failed(req.pubsub_name, req.topic, exc) from exc
    metrics.record_publish(req.source, req.pubsub_name, req.topic, ok=True)


def _entry_bytes(event: Any, content_type: str) -> bytes:
    """A bulk entry's `event` is JSON: strings are sent as-is unless the content type is JSON."""
    if isinstance(event, str) and not envelope.is_json_content_type(content_type):
        return event.encode()
    return json.dumps(event, separators=(",", ":")).encode()


def parse_bulk_entries(req_pubsub: str, topic: str, body: Any) -> list[dict[str, Any]]:
    """Validate the bulk publish body `[{entryId, event, contentType, metadata?}]`."""
    if not isinstance(body, list):
        raise errors.malformed_events(req_pubsub, topic, "body must be a JSON array of entries")
    seen: set[str] = set()
    for i, entry in enumerate(body):
        if not isinstance(entry, dict):
            raise errors.malformed_events(req_pubsub, topic, f"entry [{i}] must be an object")
        entry_id = entry.get("entryId")
        if not isinstance(entry_id, str) or not entry_id:
            raise errors.malformed_events(req_pubsub, topic, f"entry [{i}]: entryId is missing")
        if entry_id in seen:
            raise errors.malformed_events(req_pubsub, topic, f"entry [{i}]: entryId {entry_id} is duplicated")
        seen.add(entry_id)
        if "event" not in entry:
            raise errors.malformed_events(req_pubsub, topic, f"entry {entry_id}: event is missing")
        meta = entry.get("metadata") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            reason = f"entry {entry_id}: metadata must map to strings"
            raise errors.malformed_events(req_pubsub, topic, reason)
    return body


async def bulk_publish(
    pubsub: PubSub,
    *,
    pubsub_name: str,
    topic: str,
    entries: list[dict[str, Any]],
    metadata: dict[str, str],
    source: str,
    traceparent: str = "",
    tracestate: str = "",
) -> dict[str, str]:
    """Publish validated entries; return {entry_id: error} for the ones the broker refused."""
    if not topic:
        raise errors.topic_empty(pubsub_name)
    features = pubsub.features()
    built: list[BulkEntry] = []
    for entry in entries:
        content_type = entry.get("contentType") or "application/json"
        entry_meta = {**metadata, **(entry.get("metadata") or {})}
        req = PublishRequest(
            pubsub_name=pubsub_name,
            topic=topic,
            data=_entry_bytes(entry["event"], content_type),
            content_type=content_type,
            metadata=entry_meta,
            source=source,
            traceparent=traceparent,
            tracestate=tracestate,
        )
        built.append(BulkEntry(entry["entryId"], build_payload(req, features), entry_meta))
    try:
        if isinstance(pubsub, BulkPublisher) and Feature.BULK_PUBLISH in features:
            return await pubsub.bulk_publish(topic, built)
        return await defaults.bulk_publish(pubsub, topic, built)
    except Exception as exc:
        raise errors.publish_failed(pubsub_name, topic, exc) from exc
