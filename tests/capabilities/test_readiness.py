"""Before its first component set is loaded the capability service is not ready: healthz answers non-2xx and
building-block calls a retryable 503 / gRPC UNAVAILABLE, never the permanent "not configured" 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from capability_testkit import component
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sidecar_process import FakeControlPlane, SidecarProcess, start_sidecar

from xds.testing.envoy import free_port


@pytest.fixture
def sidecar_without_control_plane(tmp_path: Path) -> Iterator[tuple[SidecarProcess, int]]:
    cp_port = free_port()  # nothing listens there yet
    sidecar = start_sidecar(tmp_path, "orders", "--control-plane", f"http://127.0.0.1:{cp_port}", grpc=True)
    yield sidecar, cp_port
    sidecar.stop()


def grpc_get_state(sidecar: SidecarProcess, store: str) -> grpc.RpcError | state_pb2.GetStateResponse:
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        try:
            return stub.GetState(state_pb2.GetStateRequest(store_name=store, key="k"), timeout=10)
        except grpc.RpcError as exc:
            return exc


def test_calls_are_retryable_until_the_first_component_set_then_served(
    sidecar_without_control_plane: tuple[SidecarProcess, int],
) -> None:
    sidecar, cp_port = sidecar_without_control_plane
    for path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        assert not 200 <= sidecar.request("GET", path).status < 300, path
    not_ready = sidecar.request("GET", "/readyz")  # what the proxy's Envoy checks (no token needed)
    assert (not_ready.status, not_ready.json()["errorCode"]) == (503, "ERR_NOT_READY"), not_ready

    for method, path, body in (
        ("GET", "/v1.0/state/statestore/k", None),
        ("POST", "/v1.0/state/statestore", b'[{"key": "k", "value": 1}]'),
        ("POST", "/v1.0/publish/pubsub/orders", b'{"n": 1}'),
    ):
        answer = sidecar.request(method, path, body)
        assert answer.status == 503, (path, answer)
        assert answer.json()["errorCode"] == "ERR_NOT_READY", answer.json()
        assert answer.headers.get("Retry-After") == "1"

    sidecar.wait_until(lambda: isinstance(grpc_get_state(sidecar, "statestore"), grpc.RpcError), "gRPC up")
    error = grpc_get_state(sidecar, "statestore")
    assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE, error
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    kinds = {detail.type_url.rsplit("/", 1)[-1] for detail in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"}
    retry = error_details_pb2.RetryInfo()
    next(d for d in status.details if d.Is(retry.DESCRIPTOR)).Unpack(retry)
    assert retry.retry_delay.seconds == 1

    control_plane = FakeControlPlane(
        cp_port, {"version": 1, "components": [component("statestore", "state.in-memory")]}
    )
    try:
        sidecar.wait_until(lambda: sidecar.request("GET", "/v1.0/healthz").status == 204, "healthy")
        assert sidecar.request("GET", "/v1.0/healthz/outbound").status == 204
        assert sidecar.request("GET", "/readyz").status == 204
        saved = sidecar.request("POST", "/v1.0/state/statestore", b'[{"key": "k", "value": 7}]')
        assert saved.status == 204, saved
        assert sidecar.request("GET", "/v1.0/state/statestore/k").json() == 7
        reply = grpc_get_state(sidecar, "statestore")
        assert isinstance(reply, state_pb2.GetStateResponse) and reply.data == b"7"
        # Loaded: an absent component is the usual, permanent error again.
        absent = sidecar.request("POST", "/v1.0/publish/pubsub/orders", b'{"n": 1}')
        assert (absent.status, absent.json()["errorCode"]) == (400, "ERR_PUBSUB_NOT_CONFIGURED")
        unknown = sidecar.request("GET", "/v1.0/state/nostore/k")
        assert (unknown.status, unknown.json()["errorCode"]) == (400, "ERR_STATE_STORE_NOT_FOUND")
    finally:
        control_plane.close()
