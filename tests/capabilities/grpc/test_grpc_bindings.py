"""Bindings over gRPC with the official SDK: InvokeBinding (output), OnBindingEvent (input, AppCallback)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.ext.grpc import App, BindingRequest
from grpc_harness import Sidecar, free_port, start_sidecar, write_resources

BINDINGS = """
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: files}
spec:
  type: bindings.localstorage
  version: v1
  metadata: [{name: rootPath, value: "ROOT"}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: ticks}
spec:
  type: bindings.cron
  version: v1
  metadata: [{name: schedule, value: "@every 100ms"}]
"""


@pytest.fixture(scope="module")
def bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, list[dict], Path]]:
    events: list[dict] = []
    app = App()

    @app.binding("ticks")
    def on_tick(request: BindingRequest) -> None:
        events.append(dict(request.binding_metadata))

    port = free_port()
    server = threading.Thread(
        target=app.run, kwargs={"app_port": port, "listen_address": "127.0.0.1"}, daemon=True
    )
    server.start()
    tmp = tmp_path_factory.mktemp("grpc-bindings")
    root = tmp / "files"
    resources = write_resources(tmp / "resources", BINDINGS.replace("ROOT", str(root)))
    sc, stop = start_sidecar(resources, app_id="bindapp", app_port=port, protocol="grpc")
    saved = {k: os.environ.get(k) for k in sc.env()}
    os.environ.update(sc.env())
    try:
        delivery = sc.runtime.grpc_app_delivery  # type: ignore[attr-defined]
        sc.call(delivery.ready.wait())
        assert delivery.errors == []
        yield sc, events, root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop()
        app.stop()
        server.join(timeout=5)


def test_invoke_binding_creates_and_reads_a_file(bound: tuple[Sidecar, list[dict], Path]) -> None:
    _, _, root = bound
    with DaprClient() as client:
        created = client.invoke_binding(
            "files", "create", data=b"hello", binding_metadata={"fileName": "a.txt"}
        )
        assert created.binding_metadata["fileName"] == "a.txt"
        assert (root / "a.txt").read_bytes() == b"hello"
        got = client.invoke_binding("files", "get", binding_metadata={"fileName": "a.txt"})
        assert got.data == b"hello"


def test_invoke_binding_errors_are_dapr_errors(bound: tuple[Sidecar, list[dict], Path]) -> None:
    with DaprClient() as client:
        with pytest.raises(Exception) as err:
            client.invoke_binding("nope", "create", data=b"x")
        assert "nope" in str(err.value)
        with pytest.raises(Exception) as err:
            client.invoke_binding("files", "explode", data=b"x")
        assert "does not support operation 'explode'" in str(err.value)
        with pytest.raises(Exception) as err:
            client.invoke_binding("files", "get", binding_metadata={"fileName": "../../etc/passwd"})
        assert "outside rootPath" in str(err.value)


def test_invoke_binding_empty_name_is_invalid_argument(bound: tuple[Sidecar, list[dict], Path]) -> None:
    sc, _, _ = bound
    from dapr.proto.runtime.v1 import binding_pb2, dapr_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{sc.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.InvokeBinding(binding_pb2.InvokeBindingRequest(name="", operation="create"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "binding name is empty" in (err.value.details() or "")


def test_input_binding_events_reach_the_grpc_app(bound: tuple[Sidecar, list[dict], Path]) -> None:
    _, events, _ = bound
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(events) >= 2, events
    assert "readTimeUTC" in events[0]  # the cron binding's event metadata reached OnBindingEvent
