"""APP_PROTOCOL=grpc: pub/sub events reach an app built with the official `dapr.ext.grpc` App."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, SubscriptionMessage
from grpc_harness import Sidecar, free_port, start_sidecar, write_resources

DECLARATIVE = """
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: declared}
spec: {pubsubname: pubsub, topic: yaml-only, routes: {default: orders}}
scopes: [cbapp]
"""


class Recorder:
    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {}
        self.lock = threading.Lock()

    def add(self, topic: str, value: Any) -> None:
        with self.lock:
            self.events.setdefault(topic, []).append(value)

    def wait(self, topic: str, count: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = list(self.events.get(topic, []))
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return list(self.events.get(topic, []))


def build_app(rec: Recorder) -> App:
    app = App()
    attempts = {"flaky": 0}

    @app.subscribe(pubsub_name="pubsub", topic="orders")
    def orders(event: SubscriptionMessage) -> TopicEventResponse:
        rec.add("orders", (event.data(), event.source(), event.topic()))
        return TopicEventResponse("success")

    @app.subscribe(pubsub_name="pubsub", topic="flaky")
    def flaky(event: SubscriptionMessage) -> TopicEventResponse:
        attempts["flaky"] += 1
        rec.add("flaky", attempts["flaky"])
        return TopicEventResponse("retry" if attempts["flaky"] == 1 else "success")

    @app.subscribe(pubsub_name="pubsub", topic="dropped")
    def dropped(event: SubscriptionMessage) -> TopicEventResponse:
        rec.add("dropped", event.id())
        return TopicEventResponse("drop")

    @app.subscribe(pubsub_name="pubsub", topic="broken", dead_letter_topic="broken-dlq")
    def broken(event: SubscriptionMessage) -> None:
        rec.add("broken", event.id())
        raise RuntimeError("handler crashed")

    @app.subscribe(pubsub_name="pubsub", topic="broken-dlq")
    def dead_letters(event: SubscriptionMessage) -> TopicEventResponse:
        rec.add("broken-dlq", event.data())
        return TopicEventResponse("success")

    return app


@pytest.fixture(scope="module")
def grpc_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, Recorder]]:
    rec = Recorder()
    app = build_app(rec)
    port = free_port()
    server = threading.Thread(
        target=app.run, kwargs={"app_port": port, "listen_address": "127.0.0.1"}, daemon=True
    )
    server.start()
    resources = write_resources(tmp_path_factory.mktemp("appcb") / "resources", DECLARATIVE)
    sc, stop = start_sidecar(resources, app_id="cbapp", app_port=port, protocol="grpc")
    saved = {k: os.environ.get(k) for k in sc.env()}
    os.environ.update(sc.env())
    try:
        delivery = sc.runtime.grpc_app_delivery  # type: ignore[attr-defined]
        sc.call(delivery.ready.wait())
        assert delivery.errors == []
        yield sc, rec
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop()
        app.stop()
        server.join(timeout=5)


def test_subscriptions_come_from_the_app_and_from_yaml(grpc_app: tuple[Sidecar, Recorder]) -> None:
    sc, _ = grpc_app
    subscribed = {(s.pubsub_name, s.topic) for s in sc.runtime.grpc_app_delivery.topics.subscribed}  # type: ignore[attr-defined]
    assert ("pubsub", "orders") in subscribed
    assert ("pubsub", "broken-dlq") in subscribed
    assert ("pubsub", "yaml-only") in subscribed  # only in the Subscription YAML


def test_event_delivered(grpc_app: tuple[Sidecar, Recorder]) -> None:
    _, rec = grpc_app
    with DaprClient() as client:
        client.publish_event(
            "pubsub", "orders", data=json.dumps({"order": 7}), data_content_type="application/json"
        )
    got = rec.wait("orders", 1)
    assert ({"order": 7}, "cbapp", "orders") in got


def test_retry_then_success(grpc_app: tuple[Sidecar, Recorder]) -> None:
    _, rec = grpc_app
    with DaprClient() as client:
        client.publish_event("pubsub", "flaky", data="x")
    assert rec.wait("flaky", 2) == [1, 2]


def test_drop_is_not_redelivered(grpc_app: tuple[Sidecar, Recorder]) -> None:
    _, rec = grpc_app
    with DaprClient() as client:
        client.publish_event("pubsub", "dropped", data="x")
    assert len(rec.wait("dropped", 1)) == 1
    time.sleep(0.3)  # a redelivery would arrive within redeliverDelayMs (20 ms)
    assert len(rec.wait("dropped", 1)) == 1


def test_failure_goes_to_dead_letter_topic(grpc_app: tuple[Sidecar, Recorder]) -> None:
    _, rec = grpc_app
    with DaprClient() as client:
        client.publish_event(
            "pubsub", "broken", data=json.dumps({"bad": True}), data_content_type="application/json"
        )
    assert rec.wait("broken-dlq", 1) == [{"bad": True}]
    assert len(rec.wait("broken", 1)) == 1


def test_declarative_subscription_routes_to_its_path(grpc_app: tuple[Sidecar, Recorder]) -> None:
    _, rec = grpc_app
    with DaprClient() as client:
        client.publish_event("pubsub", "yaml-only", data="from yaml")
    # The YAML routes yaml-only to path "orders": the SDK picks the `orders` handler by that path.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and ("from yaml", "cbapp", "yaml-only") not in rec.wait("orders", 0):
        time.sleep(0.02)
    assert ("from yaml", "cbapp", "yaml-only") in rec.wait("orders", 0)


def test_metadata_reports_grpc_app_protocol(grpc_app: tuple[Sidecar, Recorder]) -> None:
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2

    sc, _ = grpc_app
    with grpc.insecure_channel(f"127.0.0.1:{sc.grpc_port}") as channel:
        meta = dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
    assert meta.id == "cbapp"
    assert meta.app_connection_properties.protocol == "grpc"
    assert any(s.topic == "yaml-only" for s in meta.subscriptions)
    programmatic = {
        s.topic for s in meta.subscriptions if s.type == metadata_pb2.PubsubSubscriptionType.PROGRAMMATIC
    }
    assert {"orders", "flaky", "broken"} <= programmatic
