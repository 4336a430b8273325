"""State over gRPC with the official Dapr SDK (sync and aio clients), etags included."""

from __future__ import annotations

import json

import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions
from grpc import StatusCode
from grpc_harness import Sidecar


def test_save_get_delete_with_etags(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        client.save_state("statestore", "k1", "v1")
        got = client.get_state("statestore", "k1")
        assert got.data == b"v1"
        assert got.etag
        # A save with the current etag succeeds and changes the etag.
        client.save_state("statestore", "k1", "v2", etag=got.etag)
        newer = client.get_state("statestore", "k1")
        assert newer.data == b"v2" and newer.etag != got.etag
        # The stale etag is refused with ABORTED (Dapr's code for an etag mismatch).
        with pytest.raises(DaprGrpcError) as err:
            client.save_state("statestore", "k1", "v3", etag=got.etag)
        assert err.value.code() == StatusCode.ABORTED
        assert err.value.error_code() == "ERR_STATE_SAVE"
        # first-write without etag on an existing key fails too.
        with pytest.raises(DaprGrpcError):
            client.save_state(
                "statestore", "k1", "v4", options=StateOptions(concurrency=Concurrency.first_write)
            )
        with pytest.raises(DaprGrpcError) as err:
            client.delete_state("statestore", "k1", etag=got.etag)
        assert err.value.code() == StatusCode.ABORTED
        client.delete_state("statestore", "k1", etag=newer.etag)
        missing = client.get_state("statestore", "k1")
        assert missing.data == b"" and missing.etag == ""


def test_bulk_and_transaction_and_query(sidecar: Sidecar) -> None:
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

    with DaprClient() as client:
        client.save_bulk_state(
            "statestore",
            [
                StateItem(key="b1", value=json.dumps({"n": 1})),
                StateItem(key="b2", value=json.dumps({"n": 2})),
            ],
        )
        bulk = client.get_bulk_state("statestore", ["b1", "b2", "nope"]).items
        by_key = {item.key: item for item in bulk}
        assert json.loads(by_key["b1"].data) == {"n": 1}
        assert by_key["nope"].data == b""
        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation(key="b1", data=json.dumps({"n": 10})),
                TransactionalStateOperation(
                    key="b2", data="", operation_type=TransactionOperationType.delete
                ),
            ],
        )
        assert json.loads(client.get_state("statestore", "b1").data) == {"n": 10}
        assert client.get_state("statestore", "b2").data == b""
        result = client.query_state("statestore", json.dumps({"filter": {"EQ": {"n": 10}}}))
        assert [r.key for r in result.results] == ["b1"]


def test_grpc_and_http_see_the_same_state(sidecar: Sidecar) -> None:
    import urllib.request

    with DaprClient() as client:
        client.save_state("statestore", "shared", json.dumps({"via": "grpc"}))
    url = f"http://127.0.0.1:{sidecar.http_port}/v1.0/state/statestore/shared"
    with urllib.request.urlopen(url) as resp:
        assert json.loads(resp.read()) == {"via": "grpc"}
        etag = resp.headers["ETag"]
    with DaprClient() as client:
        assert client.get_state("statestore", "shared").etag == etag


def test_unknown_store_and_bad_input(sidecar: Sidecar) -> None:
    with DaprClient() as client:
        with pytest.raises(DaprGrpcError) as err:
            client.get_state("no-such-store", "k")
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        assert err.value.error_code() == "ERR_STATE_STORE_NOT_FOUND"
        with pytest.raises(DaprGrpcError) as err:
            client.save_state("statestore", "a||b", "v")
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        with pytest.raises(DaprGrpcError) as err:
            client.query_state("statestore", "{not json")
        assert err.value.code() == StatusCode.INVALID_ARGUMENT
        with pytest.raises(DaprGrpcError) as err:
            client.save_state("statestore", "ttl", "v", state_metadata={"ttlInSeconds": "soon"})
        assert err.value.code() == StatusCode.INVALID_ARGUMENT


async def test_aio_client_state(sidecar: Sidecar) -> None:
    async with AioDaprClient() as client:
        await client.save_state("statestore", "aio", "hello")
        got = await client.get_state("statestore", "aio")
        assert got.data == b"hello"
        await client.delete_state("statestore", "aio")
        assert (await client.get_state("statestore", "aio")).data == b""
