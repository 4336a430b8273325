"""The publish routes' bad-input answers, with Dapr's status codes and error codes."""

from __future__ import annotations

from typing import Any

from capability_testkit import component

PUBSUB = component("pubsub", "pubsub.in-memory")


async def test_unknown_pubsub_and_missing_topic(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([PUBSUB], app_id="a")
    resp = await client.post("/v1.0/publish/nope/t", json={})
    assert resp.status == 404 and (await resp.json())["errorCode"] == "ERR_PUBSUB_NOT_FOUND"
    resp = await client.post("/v1.0/publish/pubsub", json={})
    assert resp.status == 404 and (await resp.json())["errorCode"] == "ERR_TOPIC_EMPTY"
    resp = await client.put("/v1.0/publish/pubsub/a/b/c", json={"nested": "topic"})
    assert resp.status == 204


async def test_malformed_requests_are_400(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([PUBSUB], app_id="a")
    bad_ce = await client.post(
        "/v1.0/publish/pubsub/t", data=b"{oops", headers={"Content-Type": "application/cloudevents+json"}
    )
    assert bad_ce.status == 400 and (await bad_ce.json())["errorCode"] == "ERR_PUBSUB_CLOUD_EVENTS_SER"
    bad_ttl = await client.post("/v1.0/publish/pubsub/t?metadata.ttlInSeconds=-3", json={})
    assert bad_ttl.status == 400 and "ttlInSeconds" in (await bad_ttl.json())["message"]
    for body in (
        b"{not json",
        b'{"entryId": "1"}',
        b'[{"event": 1}]',
        b'[{"entryId":"1","event":1},{"entryId":"1","event":2}]',
    ):
        resp = await client.post("/v1.0-alpha1/publish/bulk/pubsub/t", data=body)
        assert resp.status == 400, body
        assert (await resp.json())["errorCode"] == "ERR_PUBSUB_EVENTS_SER"


async def test_bulk_publish_both_versions(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([PUBSUB], app_id="a")
    entries = [
        {"entryId": "1", "event": "text", "contentType": "text/plain"},
        {"entryId": "2", "event": {"a": 1}},
    ]
    for version in ("v1.0-alpha1", "v1.0"):
        assert (await client.post(f"/{version}/publish/bulk/pubsub/t", json=entries)).status == 204
