"""What the official Dapr SDKs found (issue #16), through the SDK against real Envoys and capability services:
a gRPC app's subscriptions in the metadata API, a configuration stream that survives its component's edit,
and daprd's answer to an unknown app id (ERR_DIRECT_INVOKE, 500 / gRPC INTERNAL)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprInternalError
from dapr.proto.runtime.v1 import metadata_pb2
from dapr_e2e import HERE, AppSpec, DaprMesh, component, require_server, start_dapr_mesh, stop_dapr_mesh

pytestmark = [pytest.mark.e2e]

RUN = uuid.uuid4().hex[:8]
TOPIC = f"findings-{RUN}"
CONFIG_KEY = f"findings-color-{RUN}"


def _components(settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        component("settings", "configuration.redis", {"redisHost": "127.0.0.1:6379", **(settings or {})}),
        component("events", "pubsub.redis", {"redisHost": "127.0.0.1:6379"}),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DaprMesh]:
    require_server("Redis", 6379)
    tmp = tmp_path_factory.mktemp("sdk-findings")
    grpc_app = [sys.executable, str(HERE / "dapr_grpc_app.py"), "--topic", TOPIC, "--binding", "none",
                "--out", str(tmp / "events.jsonl"), "--port"]  # fmt: skip
    gsub = AppSpec(
        "gsub", argv=lambda port: [*grpc_app, str(port)], capabilities_env={"APP_PROTOCOL": "grpc"}
    )
    gsub.http_ready = gsub.via_proxy = False  # AppCallback goes straight to the gRPC app
    specs = [AppSpec("alpha"), gsub]
    started = await start_dapr_mesh(specs, tmp)
    try:
        await started.apply(_components())
        await started.wait_components("alpha", {"settings", "events"})
        await started.wait_components("gsub", {"events"})
        await started.stack.wait_synced()
        yield started
    finally:
        await stop_dapr_mesh(started)


def _client(mesh: DaprMesh, service: str, env: pytest.MonkeyPatch) -> DaprClient:
    """The SDK pointed at `service`'s Envoy Dapr listeners (it health-checks the HTTP one first)."""
    env.setenv("DAPR_HTTP_ENDPOINT", mesh.dapr_http(service))
    env.setenv("DAPR_GRPC_ENDPOINT", f"127.0.0.1:{mesh.dapr_grpc_port(service)}")
    return DaprClient()


def _wait(predicate: Any, within_s: float = 15.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    return predicate()


def test_metadata_lists_a_grpc_apps_subscriptions(mesh: DaprMesh, monkeypatch: pytest.MonkeyPatch) -> None:
    def listed() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{mesh.dapr_http('gsub')}/v1.0/metadata", timeout=10) as resp:
            return [s for s in json.loads(resp.read())["subscriptions"] if s["topic"] == TOPIC]

    subs = _wait(listed)  # the app lists its topics (ListTopicSubscriptions) once it is up
    assert subs and subs[0]["pubsubname"] == "events" and subs[0]["type"] == "PROGRAMMATIC"
    with _client(mesh, "gsub", monkeypatch) as client:  # the gRPC metadata API tells the same
        reply = client._stub.GetMetadata(metadata_pb2.GetMetadataRequest())
    assert [(s.pubsub_name, s.topic) for s in reply.subscriptions if s.topic == TOPIC] == [("events", TOPIC)]


def test_invoking_an_unknown_app_id_answers_as_daprd(mesh: DaprMesh, monkeypatch: pytest.MonkeyPatch) -> None:
    request = urllib.request.Request(f"{mesh.dapr_http('alpha')}/v1.0/invoke/no-such-app/method/hello")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(answer.value.read())
    assert answer.value.code == 500 and body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"].startswith("failed to invoke, id: no-such-app, err: ")
    by_header = urllib.request.Request(f"{mesh.dapr_http('alpha')}/hello", headers={"dapr-app-id": "nope"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(by_header, timeout=10)
    assert answer.value.code == 500 and json.loads(answer.value.read())["errorCode"] == "ERR_DIRECT_INVOKE"
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "http")
    with (
        _client(mesh, "alpha", monkeypatch) as client,
        pytest.raises(DaprInternalError) as err,
    ):  # the SDK's own error type
        client.invoke_method("no-such-app", "hello", data=b"", http_verb="GET")
    assert "ERR_DIRECT_INVOKE" in str(err.value.as_dict())


@pytest.mark.asyncio(loop_scope="module")
async def test_configuration_stream_follows_an_edited_component(
    mesh: DaprMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = redis.Redis(host="127.0.0.1", port=6379)
    r.set(CONFIG_KEY, "blue||1")
    seen: list[str] = []
    got_green = threading.Event()

    def on_change(_id: str, response: Any) -> None:
        if CONFIG_KEY in response.items:
            seen.append(response.items[CONFIG_KEY].value)
            if response.items[CONFIG_KEY].value == "green":
                got_green.set()

    with _client(mesh, "alpha", monkeypatch) as client:
        sub_id = client.subscribe_configuration("settings", [CONFIG_KEY], on_change)
        assert sub_id
        await asyncio.sleep(0.5)
        # An edit of the component: the capability service replaces its instance (the old one is closed).
        await mesh.apply(_components({"maxRetries": "5"}))
        for _ in range(150):  # the new instance's subscription starts with the keys' current values
            if "blue" in seen:
                break
            await asyncio.sleep(0.1)
        assert "blue" in seen, f"no update after the reload: {seen}"
        r.set(CONFIG_KEY, "green||2")  # the stream still delivers changes, from the new instance
        assert got_green.wait(10), seen
        client.unsubscribe_configuration("settings", sub_id)
    r.delete(CONFIG_KEY)
