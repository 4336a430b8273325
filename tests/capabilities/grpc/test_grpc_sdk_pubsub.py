"""Publish, bulk publish and streaming subscriptions (SubscribeTopicEventsAlpha1) with the official SDK."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from grpc import StatusCode
from grpc_harness import Sidecar


def _wait(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_publish_and_streaming_subscription(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        sub = client.subscribe(pubsub_name="pubsub", topic="orders")
        try:
            client.publish_event(
                "pubsub", "orders", data=json.dumps({"id": 1}), data_content_type="application/json"
            )
            message = sub.next_message()
            assert message.topic() == "orders"
            assert message.pubsub_name() == "pubsub"
            assert message.data() == {"id": 1}
            assert message.data_content_type() == "application/json"
            assert message.source() == "grpcapp"  # the publishing app id, like daprd
            sub.respond_success(message)
            client.publish_event("pubsub", "orders", data="plain text")
            text = sub.next_message()
            assert text.data() == "plain text"
            sub.respond_success(text)
        finally:
            sub.close()
    assert _wait(lambda: not sidecar.grpc.api.active_streams)


def test_retry_status_redelivers(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        sub = client.subscribe(pubsub_name="pubsub", topic="retry-me")
        try:
            client.publish_event("pubsub", "retry-me", data="again")
            first = sub.next_message()
            sub.respond_retry(first)
            second = sub.next_message()
            assert second.id() == first.id()  # the same event, redelivered by the broker
            sub.respond_success(second)
        finally:
            sub.close()


def test_bulk_publish(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        sub = client.subscribe(pubsub_name="pubsub", topic="bulk")
        try:
            resp = client.publish_events(
                "pubsub",
                "bulk",
                data=[json.dumps({"n": 1}), json.dumps({"n": 2})],
                data_content_type="application/json",
            )
            assert resp.failed_entries == []
            seen = []
            for _ in range(2):
                message = sub.next_message()
                seen.append(message.data()["n"])
                sub.respond_success(message)
            assert sorted(seen) == [1, 2]
        finally:
            sub.close()


def test_publish_errors(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        with pytest.raises(DaprGrpcError) as err:
            client.publish_event("nopubsub", "t", data="x")
        assert err.value.error_code() == "ERR_PUBSUB_NOT_FOUND"
        with pytest.raises(DaprGrpcError) as err:
            client.publish_event("pubsub", "t", data="x", publish_metadata={"ttlInSeconds": "-5"})
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        with pytest.raises(DaprGrpcError) as err:
            client.publish_event("pubsub", "t", data="{bad", data_content_type="application/cloudevents+json")
        assert err.value.code() == StatusCode.INVALID_ARGUMENT


def test_stream_errors_and_cancel_leaves_nothing(sidecar: Sidecar) -> None:
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2

    api = sidecar.grpc.api
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        # First message is not an initial_request.
        bad = stub.SubscribeTopicEventsAlpha1(
            iter(
                [
                    pubsub_pb2.SubscribeTopicEventsRequestAlpha1(
                        event_processed=pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(id="x")
                    )
                ]
            )
        )
        with pytest.raises(grpc.RpcError) as err:
            next(bad)
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        # Unknown pubsub.
        unknown = stub.SubscribeTopicEventsAlpha1(
            iter(
                [
                    pubsub_pb2.SubscribeTopicEventsRequestAlpha1(
                        initial_request=pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(
                            pubsub_name="nope", topic="t"
                        )
                    )
                ]
            )
        )
        with pytest.raises(grpc.RpcError) as err:
            next(unknown)
        assert "nope" in err.value.details()

        # A client that cancels while an event is in flight: the subscription is removed and the event
        # goes back to the broker, to be delivered to the next subscriber.
        import queue

        outgoing: queue.Queue = queue.Queue()
        outgoing.put(
            pubsub_pb2.SubscribeTopicEventsRequestAlpha1(
                initial_request=pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(
                    pubsub_name="pubsub", topic="cancel-me"
                )
            )
        )
        call = stub.SubscribeTopicEventsAlpha1(iter(outgoing.get, None))
        assert next(call).HasField("initial_response")
        assert _wait(lambda: len(api.active_streams) == 1)
        with DaprClient() as client:
            client.publish_event("pubsub", "cancel-me", data="in flight")
        in_flight = next(call)
        assert in_flight.event_message.data == b"in flight"
        call.cancel()
        outgoing.put(None)
        assert _wait(lambda: not api.active_streams)

    with DaprClient() as client:
        sub = client.subscribe(pubsub_name="pubsub", topic="cancel-me")
        try:
            again = sub.next_message()
            assert again.id() == in_flight.event_message.id
            sub.respond_success(again)
        finally:
            sub.close()
