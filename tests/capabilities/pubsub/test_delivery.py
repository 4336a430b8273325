"""End to end through the HTTP API: app A publishes on its sidecar, app B's sidecar delivers to fake app B."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

from capability_testkit import component
from cloudevents.http import from_http

from capabilities.delivery.http import active_subscriptions, manager_for

PUBSUB = component("pubsub", "pubsub.in-memory", redeliverDelayMs="20")


def subscription_doc(name: str, spec: dict[str, Any], scopes: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v2alpha1",
        "kind": "Subscription",
        "metadata": {"name": name},
        "spec": spec,
    }
    if scopes is not None:
        doc["scopes"] = scopes
    return doc


async def sidecar(
    make_sidecar: Any, app_id: str, app: Any = None, docs: list[dict[str, Any]] | None = None
) -> Any:
    client, runtime = await make_sidecar(docs or [PUBSUB], app_id=app_id, app_url=app.url() if app else None)
    if app is not None:
        manager = manager_for(runtime)
        assert manager is not None
        await asyncio.wait_for(manager.ready.wait(), 10)
    return client, runtime


def topic() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_programmatic_subscription_receives_a_cloudevent(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    app_b = await fake_app([{"pubsubname": "pubsub", "topic": t, "route": "/orders"}])
    _, runtime_b = await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")

    resp = await client_a.post(f"/v1.0/publish/pubsub/{t}", json={"orderId": 7})
    assert resp.status == 204
    await app_b.wait_for(lambda: len(app_b.received.get("/orders", [])) == 1)

    ce = app_b.received["/orders"][0]
    assert ce["data"] == {"orderId": 7}
    assert (ce["source"], ce["type"], ce["topic"], ce["pubsubname"]) == (
        "a",
        "com.dapr.event.sent",
        t,
        "pubsub",
    )
    assert ce["specversion"] == "1.0" and ce["datacontenttype"] == "application/json"
    headers = app_b.headers["/orders"][0]
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    parsed = from_http(headers, __import__("json").dumps(ce))  # an independent CloudEvents implementation
    assert parsed["id"] == ce["id"]
    listed = active_subscriptions(runtime_b)
    assert {"pubsubname": "pubsub", "topic": t, "type": "PROGRAMMATIC"}.items() <= listed[0].items()
    assert runtime_b.programmatic_subscriptions == listed


async def test_declarative_subscription_routes_with_cel_and_honours_scopes(
    make_sidecar: Any, fake_app: Any
) -> None:
    t = topic()
    spec = {
        "pubsubname": "pubsub",
        "topic": t,
        "routes": {
            "rules": [{"match": 'event.data.kind == "big" && event.data.qty > 5', "path": "/big"}],
            "default": "/small",
        },
    }
    docs = [PUBSUB, subscription_doc("orders", spec, scopes=["b"])]
    app_b = await fake_app(None)  # no programmatic subscriptions (404)
    app_c = await fake_app(None)
    await sidecar(make_sidecar, "b", app_b, docs)
    await sidecar(make_sidecar, "c", app_c, docs)  # not in scopes: must not subscribe
    client_a, _ = await sidecar(make_sidecar, "a")

    for body in ({"kind": "big", "qty": 9}, {"kind": "big", "qty": 1}, {"kind": "tiny"}):
        assert (await client_a.post(f"/v1.0/publish/pubsub/{t}", json=body)).status == 204
    await app_b.wait_for(lambda: len(app_b.received.get("/small", [])) == 2 and "/big" in app_b.received)
    assert [e["data"] for e in app_b.received["/big"]] == [{"kind": "big", "qty": 9}]
    await asyncio.sleep(0.2)
    assert app_c.received == {}


async def test_failed_delivery_is_retried_until_the_app_succeeds(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    app_b = await fake_app([{"pubsubname": "pubsub", "topic": t, "route": "/orders"}])
    app_b.reply("/orders", (500, None), (200, {"status": "RETRY"}))
    await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")

    resp = await client_a.post(
        f"/v1.0/publish/pubsub/{t}", data=b"hi", headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 204
    await app_b.wait_for(lambda: len(app_b.received.get("/orders", [])) == 3)
    ids = {e["id"] for e in app_b.received["/orders"]}
    assert len(ids) == 1, "the same event is retried"
    assert app_b.received["/orders"][0]["data"] == "hi"


async def test_poison_message_lands_in_the_dead_letter_topic(make_sidecar: Any, fake_app: Any) -> None:
    t, dlt = topic(), topic()
    app_b = await fake_app(
        [
            {"pubsubname": "pubsub", "topic": t, "route": "/orders", "deadLetterTopic": dlt},
            {"pubsubname": "pubsub", "topic": dlt, "route": "/dead"},
        ]
    )
    app_b.reply("/orders", *[(500, None)] * 50)
    _, runtime_b = await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")

    assert (await client_a.post(f"/v1.0/publish/pubsub/{t}", json={"poison": True})).status == 204
    await app_b.wait_for(lambda: "/dead" in app_b.received)
    assert app_b.received["/dead"][0]["data"] == {"poison": True}
    assert len(app_b.received["/orders"]) == 1, "no retry policy: dead-lettered on the first failure"
    metadata = await (await client_a.get("/v1.0/metadata")).json()
    assert metadata["id"] == "a"
    assert {s["topic"] for s in active_subscriptions(runtime_b)} == {t, dlt}


async def test_two_replicas_of_one_app_share_a_topic(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    subs = [{"pubsubname": "pubsub", "topic": t, "route": "/work"}]
    replica1, replica2, other = await fake_app(subs), await fake_app(subs), await fake_app(subs)
    await sidecar(make_sidecar, "worker", replica1)
    await sidecar(make_sidecar, "worker", replica2)
    await sidecar(make_sidecar, "auditor", other)
    client_a, _ = await sidecar(make_sidecar, "a")

    for i in range(10):
        assert (await client_a.post(f"/v1.0/publish/pubsub/{t}", json={"n": i})).status == 204
    await other.wait_for(lambda: len(other.received.get("/work", [])) == 10)

    def shared() -> list[int]:
        return [e["data"]["n"] for app in (replica1, replica2) for e in app.received.get("/work", [])]

    async with asyncio.timeout(10):
        while len(shared()) < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert sorted(shared()) == list(range(10)), "each message reaches exactly one replica"


async def test_raw_payload_publish_and_subscribe(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    app_b = await fake_app(
        [{"pubsubname": "pubsub", "topic": t, "route": "/raw", "metadata": {"rawPayload": "true"}}]
    )
    await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")
    resp = await client_a.post(f"/v1.0/publish/pubsub/{t}?metadata.rawPayload=true", data=b"\x00raw bytes")
    assert resp.status == 204
    await app_b.wait_for(lambda: "/raw" in app_b.received)
    ce = app_b.received["/raw"][0]
    assert base64.b64decode(ce["data_base64"]) == b"\x00raw bytes"  # Dapr's FromRawPayload form


async def test_bulk_subscribe_batches_and_retries_per_entry(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    bulk = {"enabled": True, "maxMessagesCount": 3, "maxAwaitDurationMs": 100}
    app_b = await fake_app([{"pubsubname": "pubsub", "topic": t, "route": "/bulk", "bulkSubscribe": bulk}])
    await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")

    entries = [{"entryId": str(i), "event": {"n": i}, "contentType": "application/json"} for i in range(3)]
    resp = await client_a.post(f"/v1.0-alpha1/publish/bulk/pubsub/{t}", json=entries)
    assert resp.status == 204
    await app_b.wait_for(lambda: "/bulk" in app_b.received)
    first = app_b.received["/bulk"][0]
    assert first["topic"] == t and first["type"] == "com.dapr.event.sent.bulk"
    assert sorted(e["event"]["data"]["n"] for e in first["entries"]) <= [0, 1, 2]
    # A 2xx without a statuses list counts as delivered for the whole batch: nothing is redelivered.
    await asyncio.sleep(0.3)
    delivered = [e["event"]["data"]["n"] for batch in app_b.received["/bulk"] for e in batch["entries"]]
    assert sorted(delivered) == [0, 1, 2]


async def test_bulk_entry_marked_retry_is_redelivered(make_sidecar: Any, fake_app: Any) -> None:
    t = topic()
    bulk = {"enabled": True, "maxMessagesCount": 2, "maxAwaitDurationMs": 100}
    app_b = await fake_app([{"pubsubname": "pubsub", "topic": t, "route": "/bulk", "bulkSubscribe": bulk}])
    await sidecar(make_sidecar, "b", app_b)
    client_a, _ = await sidecar(make_sidecar, "a")
    # First answer: a statuses list without our entry -> missing = RETRY; the retry then succeeds.
    app_b.reply("/bulk", (200, {"statuses": []}))
    await client_a.post(f"/v1.0/publish/pubsub/{t}", json={"n": 1})
    await app_b.wait_for(lambda: len(app_b.received.get("/bulk", [])) >= 2, limit_s=15)
    ids = {batch["entries"][0]["event"]["id"] for batch in app_b.received["/bulk"]}
    assert len(ids) == 1


async def test_subscriptions_follow_config_changes(make_sidecar: Any, fake_app: Any) -> None:
    from capabilities.config.documents import parse_documents

    t = topic()
    app_b = await fake_app(None)
    _, runtime_b = await sidecar(make_sidecar, "b", app_b)
    assert active_subscriptions(runtime_b) == []
    doc = subscription_doc("late", {"pubsubname": "pubsub", "topic": t, "route": "/late"})
    await runtime_b.apply_resources(parse_documents([(PUBSUB, "x.yaml"), (doc, "x.yaml")], "b"))
    assert [s["topic"] for s in active_subscriptions(runtime_b)] == [t]
    client_a, _ = await sidecar(make_sidecar, "a")
    await client_a.post(f"/v1.0/publish/pubsub/{t}", json={"late": True})
    await app_b.wait_for(lambda: "/late" in app_b.received)
