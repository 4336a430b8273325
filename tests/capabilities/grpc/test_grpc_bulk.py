"""APP_PROTOCOL=grpc bulk subscribe: batches reach AppCallback.OnBulkTopicEvent (or the Alpha1 fallback)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from grpc_harness import Sidecar, free_port, start_sidecar, write_resources

Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus

DECLARATIVE_BULK = """
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: bulk-declared}
spec:
  pubsubname: pubsub
  topic: yaml-bulk
  routes: {default: /yaml}
  bulkSubscribe: {enabled: true, maxMessagesCount: 4, maxAwaitDurationMs: 300}
scopes: [bulkapp]
"""


class BulkApp(appcallback_pb2_grpc.AppCallbackServicer):
    """Records every bulk request; entry data "retry" is answered RETRY once, "drop" DROP, others SUCCESS."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, str, list[Any]]] = []  # (method, path, entry data)
        self.retried: set[Any] = set()
        self.lock = threading.Lock()

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        bulk = appcallback_pb2.BulkSubscribeConfig(
            enabled=True, max_messages_count=5, max_await_duration_ms=300
        )
        return appcallback_pb2.ListTopicSubscriptionsResponse(
            subscriptions=[
                appcallback_pb2.TopicSubscription(
                    pubsub_name="pubsub",
                    topic="orders",
                    routes=appcallback_pb2.TopicRoutes(default="/orders"),
                    bulk_subscribe=bulk,
                )
            ]
        )

    def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
        return self.answer("OnBulkTopicEvent", request)

    def answer(self, method: str, request: Any) -> Any:
        statuses = []
        data = []
        with self.lock:
            for entry in request.entries:
                assert entry.HasField("cloud_event"), "non-raw subscriptions get CloudEvent entries"
                value = json.loads(entry.cloud_event.data)
                data.append(value)
                status = Status.SUCCESS
                if value == "drop":
                    status = Status.DROP
                elif value == "retry" and value not in self.retried:
                    self.retried.add(value)
                    status = Status.RETRY
                statuses.append(
                    appcallback_pb2.TopicEventBulkResponseEntry(entry_id=entry.entry_id, status=status)
                )
            self.batches.append((method, request.path, data))
        return appcallback_pb2.TopicEventBulkResponse(statuses=statuses)

    def delivered(self, value: Any) -> int:
        with self.lock:
            return sum(batch.count(value) for _, _, batch in self.batches)

    def wait_for(self, predicate: Any, timeout: float = 8.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()


class AlphaOnlyApp(BulkApp, appcallback_pb2_grpc.AppCallbackAlphaServicer):
    """Only the deprecated AppCallbackAlpha.OnBulkTopicEventAlpha1, and no programmatic subscriptions."""

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        return appcallback_pb2.ListTopicSubscriptionsResponse()

    def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

    def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
        return self.answer("OnBulkTopicEventAlpha1", request)


def _run(app: BulkApp, tmp: Any, extra: str) -> Iterator[Sidecar]:
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, server)
    if isinstance(app, AlphaOnlyApp):
        appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(app, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    resources = write_resources(tmp / "resources", extra)
    sc, stop = start_sidecar(resources, app_id="bulkapp", app_port=port, protocol="grpc")
    saved = {k: os.environ.get(k) for k in sc.env()}
    os.environ.update(sc.env())
    try:
        delivery = sc.runtime.grpc_app_delivery  # type: ignore[attr-defined]
        sc.call(delivery.ready.wait())
        assert delivery.errors == []
        yield sc
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop()
        server.stop(grace=None)


@pytest.fixture(scope="module")
def bulk_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, BulkApp]]:
    app = BulkApp()
    for sc in _run(app, tmp_path_factory.mktemp("bulk"), ""):
        yield sc, app


@pytest.fixture(scope="module")
def alpha_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, AlphaOnlyApp]]:
    app = AlphaOnlyApp()
    for sc in _run(app, tmp_path_factory.mktemp("alpha"), DECLARATIVE_BULK):
        yield sc, app


def _publish(topic: str, values: list[Any]) -> None:
    with DaprClient() as client:
        reply = client.publish_events(
            "pubsub", topic, [json.dumps(v) for v in values], data_content_type="application/json"
        )
    assert not reply.failed_entries


def test_ten_messages_arrive_in_batches_with_retry_and_drop(bulk_app: tuple[Sidecar, BulkApp]) -> None:
    sc, app = bulk_app
    values: list[Any] = [f"m{i}" for i in range(8)] + ["retry", "drop"]
    _publish("orders", values)

    # every message delivered; "retry" once more after its RETRY status
    assert app.wait_for(lambda: all(app.delivered(v) >= 1 for v in values) and app.delivered("retry") >= 2)
    time.sleep(0.5)  # room for any wrong redelivery (the broker redelivers after 20 ms)
    assert app.delivered("retry") == 2
    assert app.delivered("drop") == 1  # DROP is acked, never redelivered
    assert all(app.delivered(v) == 1 for v in values[:8])  # SUCCESS entries are acked once
    sizes = [len(data) for _, _, data in app.batches]
    assert max(sizes) > 1, f"expected batching, got batch sizes {sizes}"
    assert max(sizes) <= 5  # maxMessagesCount from ListTopicSubscriptions' bulk_subscribe
    assert {method for method, _, _ in app.batches} == {"OnBulkTopicEvent"}
    assert {path for _, path, _ in app.batches} == {"/orders"}
    batcher = sc.runtime.grpc_app_delivery.topics.batchers[("pubsub", "orders")]  # type: ignore[attr-defined]
    assert batcher.max_count == 5


def test_declarative_bulk_falls_back_to_alpha_service(alpha_app: tuple[Sidecar, AlphaOnlyApp]) -> None:
    _, app = alpha_app
    values = [f"y{i}" for i in range(6)]
    _publish("yaml-bulk", values)
    assert app.wait_for(lambda: all(app.delivered(v) == 1 for v in values))
    sizes = [len(data) for _, _, data in app.batches]
    assert max(sizes) > 1 and max(sizes) <= 4, sizes
    assert {method for method, _, _ in app.batches} == {"OnBulkTopicEventAlpha1"}
    assert {path for _, path, _ in app.batches} == {"/yaml"}


def test_bulk_entry_carries_the_cloud_event() -> None:
    from capabilities.delivery.grpc.events import bulk_entry

    ce = {"id": "e1", "source": "app", "type": "t", "specversion": "1.0", "data": {"a": 1},
          "datacontenttype": "application/json", "traceid": "x"}  # fmt: skip
    entry = bulk_entry("id-1", ce, raw_payload=False)
    assert entry.entry_id == "id-1"
    assert entry.cloud_event.id == "e1" and json.loads(entry.cloud_event.data) == {"a": 1}
    assert entry.cloud_event.extensions["traceid"] == "x"
    raw = bulk_entry("id-2", {"data_base64": "aGk=", "datacontenttype": "text/plain"}, raw_payload=True)
    assert raw.HasField("bytes") and raw.bytes == b"hi" and raw.content_type == "text/plain"
