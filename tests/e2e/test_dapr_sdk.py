"""The official Dapr Python SDK, unmodified, against the mesh THROUGH ENVOY.

The SDK is pointed (DAPR_HTTP_ENDPOINT / DAPR_GRPC_ENDPOINT, or DAPR_HTTP_PORT / DAPR_GRPC_PORT) at alpha's
proxy Dapr listeners, never at the capability service: every call crosses a real Envoy. beta is an HTTP
test app (invocation target); gsub is a `dapr.ext.grpc` App whose capability service delivers over
AppCallback (APP_PROTOCOL=grpc); greeter is a plain gRPC server reached by `dapr-app-id` metadata.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import redis
from dapr.clients import DaprClient
from dapr_e2e import (
    HERE,
    AppSpec,
    DaprMesh,
    PortPool,
    component,
    require_server,
    start_dapr_mesh,
    stop_dapr_mesh,
)

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:The Distributed Lock API:UserWarning")]

RUN = uuid.uuid4().hex[:8]
TOPIC = f"sdk-orders-{RUN}"
CONFIG_KEY = f"sdk-color-{RUN}"


def _greeter_docs(port: int) -> list[dict]:
    """A plain gRPC service in the mesh (no sidecar: the endpoint is the server itself)."""
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "greeter", "namespace": "default"},
            "spec": {
                "hosts": ["greeter"],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": 9090, "name": "grpc", "protocol": "GRPC"}],
                "workloadSelector": {"labels": {"app": "greeter"}},
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "greeter-v1", "namespace": "default"},
            # no sidecar: plaintext (mTLS is on by default and Mecha takes a WorkloadEntry for a proxy)
            "spec": {
                "address": "127.0.0.1",
                "ports": {"grpc": port},
                "labels": {"app": "greeter", "security.istio.io/tlsMode": "disabled"},
            },
        },
    ]


def _start_greeter(port: int) -> grpc.Server:
    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-saw-app-id", metadata.get("dapr-app-id", "-")),))
        return b"hello " + request

    handler = grpc.method_handlers_generic_handler(
        "test.Greeter", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


class SdkMesh:
    def __init__(self, mesh: DaprMesh, tmp: Path, out: Path) -> None:
        self.mesh, self.tmp, self.out = mesh, tmp, out

    def env(self) -> dict[str, str]:
        http = self.mesh.dapr_http("alpha")
        return {
            "DAPR_HTTP_ENDPOINT": http,
            "DAPR_GRPC_ENDPOINT": f"127.0.0.1:{self.mesh.dapr_grpc_port('alpha')}",
            "DAPR_HEALTH_TIMEOUT": "10",
        }

    def recorded(self, kind: str) -> list[dict]:
        if not self.out.exists():
            return []
        return [
            row for line in self.out.read_text().splitlines() if (row := json.loads(line))["kind"] == kind
        ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sdk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SdkMesh]:
    require_server("Redis", 6379)
    tmp = tmp_path_factory.mktemp("dapr-sdk")
    out = tmp / "gsub-events.jsonl"
    grpc_app = [sys.executable, str(HERE / "dapr_grpc_app.py"), "--topic", TOPIC, "--binding", "ticks",
                "--out", str(out), "--port"]  # fmt: skip
    specs = [
        AppSpec("alpha"),
        AppSpec("beta"),
        AppSpec(
            "gsub",
            argv=lambda port: [*grpc_app, str(port)],
            capabilities_env={"APP_PROTOCOL": "grpc"},
            http_ready=False,
            via_proxy=False,  # AppCallback goes straight to the gRPC app
        ),
    ]
    greeter_port = PortPool()()
    mesh = await start_dapr_mesh(specs, tmp)
    # after the stack: a gRPC server's threads in this process broke the children's fork (a capability
    # service aborted with 'epoll_wait error: Bad file descriptor')
    greeter = _start_greeter(greeter_port)
    secrets = tmp / "secrets.json"
    secrets.write_text(json.dumps({"db-password": "s3cret"}))
    docs = [
        component("memstate", "state.in-memory", {}),
        component("events", "pubsub.redis", {"redisHost": "127.0.0.1:6379", "processingTimeout": "1s"}),
        component("files", "bindings.localstorage", {"rootPath": str(tmp / "files")}, scopes=["alpha"]),
        component("ticks", "bindings.cron", {"schedule": "@every 200ms"}, scopes=["gsub"]),
        component("vault", "secretstores.local.file", {"secretsFile": str(secrets)}),
        component("settings", "configuration.redis", {"redisHost": "127.0.0.1:6379"}),
        component("locks", "lock.in-memory", {}),
        *_greeter_docs(greeter_port),
    ]
    saved = {}
    try:
        await mesh.apply(docs, "sdk")
        await mesh.wait_components("alpha", {"memstate", "events", "files", "vault", "settings", "locks"})
        await mesh.wait_components("gsub", {"events", "ticks"})
        await mesh.stack.wait_synced()
        state = SdkMesh(mesh, tmp, out)
        saved = {k: os.environ.get(k) for k in state.env()}
        os.environ.update(state.env())
        yield state
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        greeter.stop(0)
        await stop_dapr_mesh(mesh)


@pytest.fixture
def client(sdk: SdkMesh) -> Iterator[DaprClient]:
    with DaprClient() as c:
        yield c


# ---- service invocation ---------------------------------------------------------------------------------
def test_invoke_over_http_through_envoy(client: DaprClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "http")
    resp = client.invoke_method("beta", "echo/sdk", data=b"hi", http_verb="PUT")
    body = json.loads(resp.data)
    assert (
        body["app"] == "beta"
        and body["method"] == "PUT"
        and body["path"] == "/echo/sdk"
        and body["body"] == "hi"
    )


def test_invoke_over_grpc_invoke_service(sdk: SdkMesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient() as c:  # InvokeService -> capability service -> alpha's Dapr listener -> beta
        resp = c.invoke_method(
            "beta", "echo/over-grpc", data=b"x", http_verb="POST", http_querystring=(("a", "1"),)
        )
        body = json.loads(resp.data)
        assert body["app"] == "beta" and body["path"] == "/echo/over-grpc" and body["query"] == "a=1"
        with pytest.raises(Exception) as err:
            c.invoke_method("beta", "status/404", data=b"", http_verb="GET")
        assert "404" in str(err.value) or "NOT_FOUND" in str(err.value)


def test_grpc_proxying_by_dapr_app_id_metadata(sdk: SdkMesh) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sdk.mesh.dapr_grpc_port('alpha')}") as channel:
        say = channel.unary_unary("/test.Greeter/Say")  # raw bytes: no generated stubs needed
        reply, call = say.with_call(b"mesh", metadata=(("dapr-app-id", "greeter"),), timeout=10)
    assert reply == b"hello mesh"
    # Envoy's dapr-app-id route removes the routing header before the call reaches the service
    assert dict(call.trailing_metadata())["x-saw-app-id"] == "-"


# ---- state, secrets, configuration, lock, metadata ----------------------------------------------------
def test_state_with_etags(client: DaprClient) -> None:
    key = f"sdk-{uuid.uuid4().hex[:6]}"
    client.save_state("memstate", key, "v1")
    got = client.get_state("memstate", key)
    assert got.data == b"v1" and got.etag
    with pytest.raises(Exception) as err:
        client.save_state("memstate", key, "v2", etag=got.etag + "9")
    assert "etag" in str(err.value).lower()
    client.save_state("memstate", key, "v2", etag=got.etag)
    assert client.get_state("memstate", key).data == b"v2"


def test_secrets(client: DaprClient) -> None:
    assert client.get_secret("vault", "db-password").secret == {"db-password": "s3cret"}


def test_configuration_get_and_subscribe(client: DaprClient) -> None:
    r = redis.Redis(host="127.0.0.1", port=6379)
    r.set(CONFIG_KEY, "blue||1")
    assert client.get_configuration("settings", [CONFIG_KEY]).items[CONFIG_KEY].value == "blue"
    seen: list[str] = []
    got = threading.Event()

    def on_change(_id: str, response: Any) -> None:
        if CONFIG_KEY in response.items:
            seen.append(response.items[CONFIG_KEY].value)
            if response.items[CONFIG_KEY].value == "green":
                got.set()

    sub_id = client.subscribe_configuration("settings", [CONFIG_KEY], on_change)
    assert sub_id
    time.sleep(0.5)  # the stream is open before the write
    r.set(CONFIG_KEY, "green||2")
    assert got.wait(10), seen
    assert client.unsubscribe_configuration("settings", sub_id)
    r.delete(CONFIG_KEY)


def test_lock(client: DaprClient) -> None:
    resource = f"res-{uuid.uuid4().hex[:6]}"
    assert client.try_lock("locks", resource, "owner-1", 30).success
    assert not client.try_lock("locks", resource, "owner-2", 30).success
    assert client.unlock("locks", resource, "owner-1").status.name == "success"
    assert client.try_lock("locks", resource, "owner-2", 30).success


def test_metadata(client: DaprClient) -> None:
    meta = client.get_metadata()
    assert meta.application_id == "alpha"
    types = {c.name: c.type for c in meta.registered_components}
    assert types["memstate"] == "state.in-memory" and types["files"] == "bindings.localstorage"
    assert "ticks" not in types  # scoped to gsub


# ---- bindings ------------------------------------------------------------------------------------------
def test_output_binding(client: DaprClient, sdk: SdkMesh) -> None:
    created = client.invoke_binding(
        "files", "create", data=b"through envoy", binding_metadata={"fileName": "f.txt"}
    )
    assert created.binding_metadata["fileName"] == "f.txt"
    assert (sdk.tmp / "files" / "f.txt").read_bytes() == b"through envoy"
    assert (
        client.invoke_binding("files", "get", binding_metadata={"fileName": "f.txt"}).data == b"through envoy"
    )


def _wait(predicate: Any, within_s: float = 15.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    return predicate()


def test_input_binding_reaches_grpc_app(sdk: SdkMesh) -> None:
    ticks = _wait(lambda: len(sdk.recorded("binding")) >= 2 and sdk.recorded("binding"))
    assert ticks and ticks[0]["name"] == "ticks" and "readTimeUTC" in ticks[0]["metadata"]


# ---- pub/sub -------------------------------------------------------------------------------------------
def test_publish_reaches_grpc_app_subscriber(client: DaprClient, sdk: SdkMesh) -> None:
    client.publish_event("events", TOPIC, json.dumps({"order": 7}), data_content_type="application/json")
    events = _wait(lambda: sdk.recorded("event"))
    assert events and events[0]["data"] == {"order": 7} and events[0]["topic"] == TOPIC


# ---- aio client ----------------------------------------------------------------------------------------
@pytest.mark.asyncio(loop_scope="module")
async def test_aio_client_state_invoke_publish(sdk: SdkMesh) -> None:
    from dapr.aio.clients import DaprClient as AioDaprClient

    async with AioDaprClient() as c:
        key = f"aio-{uuid.uuid4().hex[:6]}"
        await c.save_state("memstate", key, "a")
        got = await c.get_state("memstate", key)
        assert got.data == b"a" and got.etag
        resp = await c.invoke_method("beta", "echo/aio", data=b"", http_verb="GET")
        assert json.loads(resp.data)["path"] == "/echo/aio"
        await c.publish_event("events", TOPIC, json.dumps({"order": 8}), data_content_type="application/json")
    events = _wait(lambda: [e for e in sdk.recorded("event") if e["data"] == {"order": 8}])
    assert events
