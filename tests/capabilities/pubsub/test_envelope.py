"""The CloudEvents envelope written once for every broker."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from capabilities.blocks.pubsub import envelope, service
from capabilities.blocks.pubsub.contract import Feature
from capabilities.errors import DaprError


def build(**kw: object) -> dict:
    req = service.PublishRequest(pubsub_name="ps", topic="t", source="app-a", **kw)  # type: ignore[arg-type]
    return json.loads(service.build_payload(req, set()))


def test_json_text_and_binary_payloads() -> None:
    assert build(data=b'{"a":1}', content_type="application/json")["data"] == {"a": 1}
    text = build(data=b"hello", content_type="text/plain")
    assert text["data"] == "hello" and text["datacontenttype"] == "text/plain"
    binary = build(data=b"\x00\x01", content_type="application/octet-stream")
    assert base64.b64decode(binary["data_base64"]) == b"\x00\x01" and "data" not in binary
    default = build(data=b"x")
    assert default["datacontenttype"] == "text/plain" and default["type"] == "com.dapr.event.sent"
    assert default["source"] == "app-a" and default["topic"] == "t" and default["pubsubname"] == "ps"


def test_caller_cloudevent_is_kept_and_completed() -> None:
    ce = build(
        data=json.dumps(
            {"id": "mine", "source": "src", "type": "my.type", "specversion": "1.0", "data": 1}
        ).encode(),
        content_type="application/cloudevents+json",
        traceparent="00-abc-def-01",
    )
    assert (ce["id"], ce["source"], ce["type"], ce["data"]) == ("mine", "src", "my.type", 1)
    assert ce["topic"] == "t" and ce["traceparent"] == "00-abc-def-01"
    with pytest.raises(DaprError) as info:
        build(data=b"not json", content_type="application/cloudevents+json")
    assert info.value.http_status == 400


def test_metadata_overrides_and_raw_payload() -> None:
    ce = build(
        data=b"x", metadata={"cloudevent.id": "fixed", "cloudevent.type": "custom", "cloudevent.nope": "z"}
    )
    assert ce["id"] == "fixed" and ce["type"] == "custom" and "nope" not in ce
    raw = service.build_payload(
        service.PublishRequest(pubsub_name="ps", topic="t", data=b"raw!", metadata={"rawPayload": "true"}),
        set(),
    )
    assert raw == b"raw!"


def test_ttl_sets_expiration_unless_the_broker_does_it() -> None:
    ce = build(data=b"x", metadata={"ttlInSeconds": "60"})
    expiration = datetime.fromisoformat(ce["expiration"].replace("Z", "+00:00"))
    assert timedelta(seconds=50) < expiration - datetime.now(UTC) <= timedelta(seconds=61)
    assert not envelope.has_expired(ce)
    assert envelope.has_expired({"expiration": "2000-01-01T00:00:00Z"})
    req = service.PublishRequest(pubsub_name="ps", topic="t", data=b"x", metadata={"ttlInSeconds": "60"})
    assert "expiration" not in json.loads(service.build_payload(req, {Feature.MESSAGE_TTL}))
    with pytest.raises(DaprError) as info:
        build(data=b"x", metadata={"ttlInSeconds": "soon"})
    assert "ttlInSeconds" in info.value.message
