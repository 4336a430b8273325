"""The CloudEvents 1.0 envelope Dapr wraps published data in; written once, used by every broker.

Mirrors components-contrib pubsub/envelope.go: NewCloudEventsEnvelope, FromCloudEvent, FromRawPayload,
HasExpired and ApplyMetadata (ttlInSeconds -> `expiration`), plus daprd's `cloudevent.*` metadata overrides.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from capabilities import strict_json
from capabilities.errors import DaprError

DEFAULT_TYPE = "com.dapr.event.sent"
DEFAULT_SOURCE = "Dapr"
DEFAULT_DATA_CONTENT_TYPE = "text/plain"
SPEC_VERSION = "1.0"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"

# Attributes a publisher may override with metadata `cloudevent.<name>` (daprd pkg/api/http, publish).
OVERRIDABLE = ("id", "source", "type", "subject", "time", "traceparent", "tracestate", "traceid")

_BINARY_PREFIXES = ("image/", "audio/", "video/")
_BINARY_TYPES = {"application/octet-stream", "application/x-protobuf", "application/protobuf"}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str) -> bool:
    mt = media_type(content_type)
    return mt == "application/json" or mt.endswith("+json")


def is_binary_content_type(content_type: str) -> bool:
    mt = media_type(content_type)
    return mt in _BINARY_TYPES or mt.startswith(_BINARY_PREFIXES)


def is_cloudevent_content_type(content_type: str) -> bool:
    return media_type(content_type) == CLOUDEVENTS_CONTENT_TYPE


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_envelope(
    *,
    data: bytes,
    topic: str,
    pubsub_name: str,
    source: str,
    content_type: str = "",
    traceparent: str = "",
    tracestate: str = "",
) -> dict[str, Any]:
    """Wrap raw published bytes: JSON content types embed the JSON, binary ones use data_base64."""
    content_type = content_type or DEFAULT_DATA_CONTENT_TYPE
    ce: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "source": source or DEFAULT_SOURCE,
        "type": DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsub_name,
        "time": _now_rfc3339(),
        "traceid": traceparent,
        "traceparent": traceparent,
        "tracestate": tracestate,
    }
    if is_json_content_type(content_type):
        try:
            ce["data"] = strict_json.loads(data) if data else None
        except (ValueError, UnicodeDecodeError):
            ce["data"] = data.decode("utf-8", "replace")  # Dapr falls back to the string form
    elif is_binary_content_type(content_type):
        ce["data_base64"] = base64.b64encode(data).decode("ascii")
    else:
        ce["data"] = data.decode("utf-8", "replace")
    return ce


def from_cloudevent(
    body: bytes, *, topic: str, pubsub_name: str, traceparent: str = "", tracestate: str = ""
) -> dict[str, Any]:
    """A caller-supplied structured CloudEvent: keep its fields, set Dapr's routing/trace ones."""
    try:
        ce = strict_json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DaprError(
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
            f"body is declared application/cloudevents+json but is not valid JSON: {exc}",
            400,
            "INVALID_ARGUMENT",
        ) from exc
    if not isinstance(ce, dict):
        raise DaprError(
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
            f"a CloudEvent must be a JSON object, got {type(ce).__name__}",
            400,
            "INVALID_ARGUMENT",
        )
    ce["topic"] = topic
    ce["pubsubname"] = pubsub_name
    if traceparent or "traceparent" not in ce:
        ce["traceid"] = ce["traceparent"] = traceparent
        ce["tracestate"] = tracestate
    ce.setdefault("id", str(uuid.uuid4()))
    ce.setdefault("source", DEFAULT_SOURCE)
    ce.setdefault("type", DEFAULT_TYPE)
    ce.setdefault("specversion", SPEC_VERSION)
    return ce


def from_raw_payload(data: bytes, *, topic: str, pubsub_name: str) -> dict[str, Any]:
    """Subscriber side: a message published raw is presented as a CloudEvent with data_base64."""
    return {
        "id": str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": "application/octet-stream",
        "source": DEFAULT_SOURCE,
        "type": DEFAULT_TYPE,
        "topic": topic,
        "pubsubname": pubsub_name,
        "data_base64": base64.b64encode(data).decode("ascii"),
    }


def apply_overrides(ce: dict[str, Any], metadata: dict[str, str]) -> None:
    """`cloudevent.<attr>` metadata overrides the generated attribute of the same name."""
    for key, value in metadata.items():
        if key.startswith("cloudevent."):
            attr = key.removeprefix("cloudevent.")
            if attr in OVERRIDABLE:
                ce[attr] = value
                if attr == "traceparent":
                    ce["traceid"] = value


def parse_ttl(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        ttl = -1
    if ttl < 0:
        raise DaprError(
            "ERR_PUBSUB_REQUEST_METADATA",
            f"metadata.ttlInSeconds: {raw!r} is not a non-negative integer",
            400,
            "INVALID_ARGUMENT",
        )
    return ttl


def apply_ttl(ce: dict[str, Any], metadata: dict[str, str]) -> None:
    """ttlInSeconds -> `expiration` (RFC 3339); expired events are dropped before delivery."""
    ttl = parse_ttl(metadata)
    if ttl is not None:
        expiration = datetime.now(UTC) + timedelta(seconds=ttl)
        ce["expiration"] = expiration.isoformat(timespec="seconds").replace("+00:00", "Z")


def has_expired(ce: dict[str, Any]) -> bool:
    raw = ce.get("expiration")
    if not raw or not isinstance(raw, str):
        return False
    try:
        expiration = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return expiration < datetime.now(UTC)


def encode(ce: dict[str, Any]) -> bytes:
    return json.dumps(ce, separators=(",", ":")).encode()


def data_bytes(ce: dict[str, Any]) -> bytes:
    """The event's payload as bytes (for rawPayload delivery and bindings)."""
    if "data_base64" in ce:
        return base64.b64decode(ce["data_base64"])
    data = ce.get("data")
    if data is None:
        return b""
    if isinstance(data, str) and not is_json_content_type(str(ce.get("datacontenttype", ""))):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()
