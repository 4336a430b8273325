"""Secrets, configuration (get + subscribe stream), lock, metadata and shutdown with the official SDK."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._response import UnlockResponseStatus
from grpc import StatusCode
from grpc_harness import Sidecar


def test_secrets(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        assert client.get_secret("secretstore", "db-password").secret == {"db-password": "s3cret"}
        bulk = client.get_bulk_secret("secretstore").secrets
        assert bulk["db-password"] == {"db-password": "s3cret"}
        assert bulk["api:key"] == {"api:key": "k1"}
        # The SDK raises the raw RpcError here; DaprGrpcError reads Dapr's ErrorInfo detail from it.
        with pytest.raises(grpc.RpcError) as err:
            client.get_secret("nostore", "x")
        assert DaprGrpcError(err.value).error_code() == "ERR_SECRET_STORE_NOT_FOUND"
        with pytest.raises(grpc.RpcError) as err:
            client.get_secret("secretstore", "missing")
        assert DaprGrpcError(err.value).error_code() == "ERR_SECRET_GET"
        assert "missing" in err.value.details()


def test_configuration_get_subscribe_unsubscribe(sidecar: Sidecar) -> None:
    store = sidecar.runtime.components("configuration")["configstore"]
    api = sidecar.grpc.api
    with DaprClient() as client:
        got = client.get_configuration("configstore", ["color", "size", "nope"])
        assert {k: v.value for k, v in got.items.items()} == {"color": "blue", "size": "L"}
        assert got.items["size"].version == "7"

        received: list[dict[str, str]] = []
        arrived = threading.Event()

        def handler(sub_id: str, response: object) -> None:
            received.append({k: v.value for k, v in response.items.items()})  # type: ignore[attr-defined]
            arrived.set()

        sub_id = client.subscribe_configuration("configstore", ["color"], handler)
        assert sub_id
        assert api.config.active == 1
        sidecar.call(store.set("color", "red"))
        assert arrived.wait(5)
        assert received[-1] == {"color": "red"}
        assert client.unsubscribe_configuration("configstore", sub_id) is True
        assert api.config.active == 0
        # Unknown id: ok=false with a message, not an exception (daprd behaviour).
        assert client.unsubscribe_configuration("configstore", "no-such-id") is False


def test_configuration_stream_cancel_releases_subscription(sidecar: Sidecar) -> None:
    from dapr.proto.runtime.v1 import configuration_pb2, dapr_pb2_grpc

    api = sidecar.grpc.api
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        call = stub.SubscribeConfiguration(
            configuration_pb2.SubscribeConfigurationRequest(store_name="configstore")
        )
        first = next(call)
        assert first.id
        assert api.config.active == 1
        call.cancel()
    deadline = time.monotonic() + 5
    while api.config.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.config.active == 0


def test_lock(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        first = client.try_lock("lockstore", "res1", "owner-a", expiry_in_seconds=30)
        assert first.success
        assert not client.try_lock("lockstore", "res1", "owner-b", expiry_in_seconds=30).success
        assert (
            client.unlock("lockstore", "res1", "owner-b").status
            == UnlockResponseStatus.lock_belongs_to_others
        )
        assert client.unlock("lockstore", "res1", "owner-a").status == UnlockResponseStatus.success
        assert (
            client.unlock("lockstore", "res1", "owner-a").status == UnlockResponseStatus.lock_does_not_exist
        )
        with pytest.raises(ValueError):  # the SDK validates expiry itself
            client.try_lock("lockstore", "res1", "owner-a", expiry_in_seconds=0)


def test_lock_validation_on_the_wire(sidecar: Sidecar) -> None:
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, lock_pb2

    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.TryLockAlpha1(
                lock_pb2.TryLockRequest(store_name="lockstore", resource_id="r", lock_owner="o")
            )
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        assert "ExpiryInSeconds" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.TryLockAlpha1(
                lock_pb2.TryLockRequest(
                    store_name="nolock", resource_id="r", lock_owner="o", expiry_in_seconds=5
                )
            )
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        assert "nolock" in err.value.details()


def test_metadata(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        client.set_metadata("team", "payments")
        meta = client.get_metadata()
        assert meta.application_id == "grpcapp"
        names = {c.name: c.type for c in meta.registered_components}
        assert names["statestore"] == "state.in-memory"
        assert names["pubsub"] == "pubsub.in-memory"
        assert meta.extended_metadata["team"] == "payments"
        assert meta.extended_metadata["daprRuntimeVersion"]


def test_unimplemented_api_is_named(sidecar: Sidecar) -> None:
    from dapr.proto.runtime.v1 import actors_pb2, dapr_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetActorState(actors_pb2.GetActorStateRequest(actor_type="t", actor_id="1", key="k"))
        assert err.value.code() == StatusCode.UNIMPLEMENTED
        assert "GetActorState" in err.value.details()


def test_metadata_runtime_version_matches_http(sidecar: Sidecar) -> None:
    import json
    import urllib.request

    from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2

    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        reply = dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.http_port}/v1.0/metadata") as resp:
        http_doc = json.loads(resp.read())
    assert reply.runtime_version == http_doc["runtimeVersion"]
    assert sorted(c.name for c in reply.registered_components) == sorted(
        c["name"] for c in http_doc["components"]
    )
