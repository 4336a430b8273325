"""Node mode through real Envoy: two apps behind ONE node proxy and ONE capability-service process.

Each app has its own Dapr listeners on the node's Envoy (its DAPR_HTTP_PORT) and its own runtime in the
shared capability process (`--app alpha:... --app beta:...`), so state keys, pub/sub source and
subscriptions are per app. DAPR_API_TOKEN / APP_API_TOKEN are on: Envoy checks the caller's token on
invoke routes, strips it, and the target's inbound route hands APP_API_TOKEN to the app.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from dapr_e2e import TEST_APP, PortPool, mesh_documents

from xds.demo.config import DemoLayout, DemoProxy, DemoWorkload
from xds.runner.procs import Child
from xds.runner.stack import Stack, StackOptions, app_dapr_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DAPR_TOKEN = "node-dapr-token"
APP_TOKEN = "node-app-token"
APPS = ("alpha", "beta")

DAPR_DOCS: list[dict[str, Any]] = [
    {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "statestore", "namespace": "default"},
        "spec": {"type": "state.in-memory", "version": "v1"},
    },
    {  # keyPrefix name: one key space for every app (and one instance in the node's process)
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "shared-store", "namespace": "default"},
        "spec": {
            "type": "state.in-memory",
            "version": "v1",
            "metadata": [{"name": "keyPrefix", "value": "name"}],
        },
    },
    {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "pubsub", "namespace": "default"},
        "spec": {"type": "pubsub.in-memory", "version": "v1"},
    },
    {
        "apiVersion": "dapr.io/v2alpha1",
        "kind": "Subscription",
        "metadata": {"name": "orders-to-beta", "namespace": "default"},
        "spec": {"pubsubname": "pubsub", "topic": "orders", "routes": {"default": "/deliver/orders"}},
        "scopes": ["beta"],
    },
]


def node_layout(ports: PortPool) -> DemoLayout:
    workloads = tuple(
        DemoWorkload(
            app,
            "v1",
            app_port=ports(),
            inbound_port=ports(),
            dapr_http_port=ports(),
            dapr_grpc_port=ports(),
            capabilities_http_port=ports(),
            capabilities_grpc_port=ports(),
        )
        for app in APPS
    )
    proxy = DemoProxy(
        id="node-x", mode="node", admin_port=ports(), outbound_port=ports(), workloads=workloads,
        dapr_http_port=ports(), dapr_grpc_port=ports(),
        capabilities_http_port=ports(), capabilities_grpc_port=ports(),
    )  # fmt: skip
    return DemoLayout(mode="node", proxies=(proxy,))


class NodeStack(Stack):
    """The runner's Stack (node capability process, bootstrap, tokens) with the Dapr test app as apps."""

    async def _start_apps(self, deadline: float) -> None:
        started = []
        for w in self.o.layout.workloads:
            argv = [sys.executable, str(TEST_APP), w.service, "--port", str(w.app_port)]
            child = Child(w.name, "app", argv, self.logs / f"{w.name}.log")
            started.append((w, await self.sup.start(child, env=app_dapr_env(self.o.layout, w.name))))
        for w, child in started:
            await self._wait_http(child, f"http://127.0.0.1:{w.app_port}/healthz", deadline)


class Node:
    def __init__(self, stack: NodeStack, layout: DemoLayout) -> None:
        self.stack, self.layout = stack, layout
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    def workload(self, app: str) -> DemoWorkload:
        return self.layout.workload(f"{app}-v1")

    def dapr(self, app: str) -> str:
        return f"http://127.0.0.1:{self.workload(app).dapr_http_port}"

    async def call(
        self, method: str, url: str, token: str | None = DAPR_TOKEN, **kw: Any
    ) -> tuple[int, Any, dict[str, str]]:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["dapr-api-token"] = token
        async with self.session.request(method, url, headers=headers, **kw) as resp:
            text = await resp.text()
            body = await resp.json(content_type=None) if text else None
            return resp.status, body, dict(resp.headers)

    async def wait_components(self, app: str, names: set[str], within_s: float = 20) -> None:
        deadline, seen = time.monotonic() + within_s, set()
        while time.monotonic() < deadline:
            status, meta, _ = await self.call("GET", self.dapr(app) + "/v1.0/metadata")
            seen = {c["name"] for c in (meta or {}).get("components", [])} if status == 200 else set()
            if names <= seen:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{app}: components {sorted(names - seen)} never loaded (has {seen})")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    tmp = tmp_path_factory.mktemp("node-mode")
    ports = PortPool()
    layout = node_layout(ports)
    config = tmp / "config"
    config.mkdir()
    docs = mesh_documents(layout) + DAPR_DOCS
    (config / "mesh.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    options = StackOptions(
        layout=layout, state_dir=tmp / "state", api_port=ports(), xds_port=ports(), config_dir=config,
        watch_interval=0.2, dapr_api_token=DAPR_TOKEN, app_api_token=APP_TOKEN,
    )  # fmt: skip
    stack = NodeStack(options)
    try:
        await stack.start(90)
    except BaseException:
        await stack.stop()
        raise
    handle = Node(stack, layout)
    try:
        assert stack.notes == [], stack.notes
        for app in APPS:
            await handle.wait_components(app, {"statestore", "shared-store", "pubsub"})
        yield handle
    finally:
        await handle.session.close()
        await stack.stop()
        assert [c.name for c in stack.sup.children if c.exited is None] == []


async def test_one_envoy_and_one_capability_process_serve_both_apps(node: Node) -> None:
    kinds = [c.kind for c in node.stack.sup.children if c.exited is None]
    assert kinds.count("envoy") == 1 and kinds.count("capabilities") == 1
    for app in APPS:  # each Dapr port reaches that app's own runtime
        status, meta, _ = await node.call("GET", node.dapr(app) + "/v1.0/metadata")
        assert status == 200 and meta["id"] == app


async def test_each_app_saves_state_under_its_own_prefix(node: Node) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    for app in APPS:
        url = node.dapr(app) + "/v1.0/state/statestore"
        status, _, _ = await node.call("POST", url, json=[{"key": key, "value": f"from-{app}"}])
        assert status == 204
    for app in APPS:  # the same key, two apps: no collision
        status, value, _ = await node.call("GET", node.dapr(app) + f"/v1.0/state/statestore/{key}")
        assert (status, value) == (200, f"from-{app}")
    # keyPrefix name: one key space; alpha's write is beta's read (one store instance in the process)
    status, _, _ = await node.call(
        "POST", node.dapr("alpha") + "/v1.0/state/shared-store", json=[{"key": key, "value": "shared"}]
    )
    assert status == 204
    status, value, _ = await node.call("GET", node.dapr("beta") + f"/v1.0/state/shared-store/{key}")
    assert (status, value) == (200, "shared")


async def test_alpha_publishes_and_only_beta_receives_with_source_alpha(node: Node) -> None:
    marker = uuid.uuid4().hex
    url = node.dapr("alpha") + "/v1.0/publish/pubsub/orders"
    status, _, _ = await node.call("POST", url, json={"marker": marker})
    assert status == 204
    deadline, rows = time.monotonic() + 20, []
    while time.monotonic() < deadline:
        async with node.session.get(f"http://127.0.0.1:{node.workload('beta').app_port}/received") as r:
            rows = [
                x for x in await r.json() if isinstance(x["data"], dict) and x["data"].get("marker") == marker
            ]
        if rows:
            break
        await asyncio.sleep(0.1)
    assert rows and rows[0]["source"] == "alpha" and rows[0]["route"] == "orders"
    async with node.session.get(f"http://127.0.0.1:{node.workload('alpha').app_port}/received") as r:
        assert await r.json() == []  # the Subscription is scoped to beta


async def test_invoke_checks_the_dapr_api_token_and_hands_the_app_its_app_token(node: Node) -> None:
    url = node.dapr("alpha") + "/v1.0/invoke/beta/method/echo/hello"
    for token in (None, "wrong-token"):  # Envoy answers daprd's 401 itself
        status, body, headers = await node.call("GET", url, token=token)
        assert status == 401, (token, body)
        assert body == {"errorCode": "ERR_UNAUTHORIZED", "message": "invalid api token"}
        assert headers["Content-Type"].startswith("application/json")
    status, body, _ = await node.call("POST", url, data=b"hi")
    assert status == 200 and body["app"] == "beta" and body["path"] == "/echo/hello" and body["body"] == "hi"
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen.get("dapr-api-token") == APP_TOKEN  # not the caller's DAPR_API_TOKEN
    # dapr-app-id addressing is checked the same way
    echo = node.dapr("alpha") + "/echo/by-header"
    status, _, _ = await node.call("GET", echo, token=None, headers={"dapr-app-id": "beta"})
    assert status == 401
    status, body, _ = await node.call("GET", echo, headers={"dapr-app-id": "beta"})
    assert status == 200 and body["app"] == "beta"
    assert {k.lower(): v for k, v in body["headers"].items()}.get("dapr-api-token") == APP_TOKEN


async def test_the_capability_service_still_checks_the_token(node: Node) -> None:
    """Not an invoke route: Envoy forwards to the app's runtime, which answers its own 401."""
    status, body, _ = await node.call("GET", node.dapr("beta") + "/v1.0/metadata", token=None)
    assert status == 401 and body["errorCode"] == "ERR_UNAUTHORIZED"
    status, _, _ = await node.call("GET", node.dapr("beta") + "/v1.0/healthz", token=None)
    assert status == 204  # healthz is exempt, as in daprd


async def test_grpc_proxying_without_the_token_gets_daprds_unauthenticated(node: Node) -> None:
    import grpc

    port = node.workload("alpha").dapr_grpc_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/mecha.test.Echo/Say")
        for metadata, message in (
            ((("dapr-app-id", "beta"),), "missing api token in request metadata"),
            (
                (("dapr-app-id", "beta"), ("dapr-api-token", "wrong")),
                "authentication error: api token mismatch",
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", metadata=metadata, timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert caught.value.details() == message
