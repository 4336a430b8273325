"""API token, oversized and malformed messages: clear gRPC status codes and a server that keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from grpc import StatusCode
from grpc_harness import Sidecar, start_sidecar, write_resources

TOKEN = "t0ken"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    resources = write_resources(tmp_path_factory.mktemp("guarded") / "resources")
    sc, stop = start_sidecar(resources, app_id="guarded", api_token=TOKEN, max_body_bytes=LIMIT)
    try:
        yield sc
    finally:
        stop()


def _stub(sc: Sidecar) -> tuple[grpc.Channel, dapr_pb2_grpc.DaprStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{sc.grpc_port}")
    return channel, dapr_pb2_grpc.DaprStub(channel)


def test_api_token_required(guarded: Sidecar) -> None:
    channel, stub = _stub(guarded)
    with channel:
        req = state_pb2.GetStateRequest(store_name="statestore", key="k")
        with pytest.raises(grpc.RpcError) as err:
            stub.GetState(req)
        assert err.value.code() == StatusCode.UNAUTHENTICATED
        assert err.value.details() == "missing api token in request metadata"
        with pytest.raises(grpc.RpcError) as err:
            stub.GetState(req, metadata=(("dapr-api-token", "wrong"),))
        assert err.value.code() == StatusCode.UNAUTHENTICATED
        assert "mismatch" in err.value.details()
        assert stub.GetState(req, metadata=(("dapr-api-token", TOKEN),)).data == b""


def test_api_token_with_sdk(guarded: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    from dapr.clients import DaprClient

    for key, value in guarded.env(token=TOKEN).items():
        monkeypatch.setenv(key, value)
    with DaprClient() as client:
        client.save_state("statestore", "tok", "ok")
        assert client.get_state("statestore", "tok").data == b"ok"
    monkeypatch.setenv("DAPR_API_TOKEN", "nope")
    with DaprClient() as client, pytest.raises(Exception) as err:
        client.get_state("statestore", "tok")
    assert "token" in str(err.value)


def test_api_token_on_streams(guarded: Sidecar) -> None:
    from dapr.proto.runtime.v1 import configuration_pb2

    channel, stub = _stub(guarded)
    with channel:
        call = stub.SubscribeConfiguration(
            configuration_pb2.SubscribeConfigurationRequest(store_name="configstore")
        )
        with pytest.raises(grpc.RpcError) as err:
            next(call)
        assert err.value.code() == StatusCode.UNAUTHENTICATED
    assert guarded.grpc.api.config.active == 0


def test_oversized_message(guarded: Sidecar) -> None:
    from dapr.proto.common.v1 import common_pb2

    channel, stub = _stub(guarded)
    md = (("dapr-api-token", TOKEN),)
    with channel:
        big = state_pb2.SaveStateRequest(
            store_name="statestore", states=[common_pb2.StateItem(key="big", value=b"x" * (LIMIT + 1))]
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.SaveState(big, metadata=md)
        assert err.value.code() == StatusCode.RESOURCE_EXHAUSTED
        assert (
            stub.GetState(state_pb2.GetStateRequest(store_name="statestore", key="big"), metadata=md).data
            == b""
        )


def test_malformed_protobuf(guarded: Sidecar) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{guarded.grpc_port}")
    with channel:
        raw = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/GetState")  # no serializers: raw bytes
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", metadata=(("dapr-api-token", TOKEN),))
        assert err.value.code() == StatusCode.INTERNAL  # daprd (grpc-go) answers INTERNAL too
        assert err.value.details().startswith("grpc: error unmarshalling request:")
        unknown = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as err:
            unknown(b"", metadata=(("dapr-api-token", TOKEN),))
        assert err.value.code() == StatusCode.UNIMPLEMENTED
        # Still serving afterwards.
        stub = dapr_pb2_grpc.DaprStub(channel)
        reply = stub.GetState(
            state_pb2.GetStateRequest(store_name="statestore", key="x"), metadata=(("dapr-api-token", TOKEN),)
        )
        assert reply.etag == ""


def test_wrong_field_types_are_rejected_by_name(guarded: Sidecar) -> None:
    """A well-formed message with an empty required field names that field."""
    channel, stub = _stub(guarded)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.GetState(
                state_pb2.GetStateRequest(store_name="statestore", key=""),
                metadata=(("dapr-api-token", TOKEN),),
            )
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        assert "key is empty" in err.value.details()


def test_deep_json_and_unsendable_invoke_metadata_are_invalid_argument(guarded: Sidecar) -> None:
    """Found by tests/fuzz/test_dapr_grpc_fuzz.py: both were INTERNAL before (a RecursionError out of
    json.loads, an aiohttp ValueError on a header with CR/LF)."""
    from dapr.proto.common.v1 import common_pb2
    from dapr.proto.runtime.v1 import invoke_pb2, pubsub_pb2

    channel, stub = _stub(guarded)
    auth = (("dapr-api-token", TOKEN),)
    deep = pubsub_pb2.BulkPublishRequestEntry(entry_id="1", event=b"[" * 5000 + b"]" * 5000,
                                              content_type="application/json")  # fmt: skip
    with channel:
        # An entry that is not usable JSON is published as text, as for any invalid JSON entry.
        published = stub.BulkPublishEventAlpha1(
            pubsub_pb2.BulkPublishRequest(pubsub_name="pubsub", topic="t", entries=[deep]), metadata=auth
        )
        assert not published.failedEntries
        message = common_pb2.InvokeRequest(method="m", content_type="text/plain\r\nX-Injected: 1")
        with pytest.raises(grpc.RpcError) as err:
            stub.InvokeService(invoke_pb2.InvokeServiceRequest(id="other", message=message), metadata=auth)
        assert err.value.code() == StatusCode.INVALID_ARGUMENT, err.value.details()
