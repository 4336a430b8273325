"""InvokeService forwards through the local proxy's Dapr HTTP listener and maps the reply.

The listener is played by a small HTTP server standing in for Envoy's `/v1.0/invoke/...` route
(MECHA_INVOKE_URL points at it), so the test checks exactly what the capability service sends and returns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from aiohttp import web
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from grpc_harness import Sidecar


@pytest.fixture
def fake_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if request.match_info["m"] == "fail":
            return web.Response(status=404, text="no such order")
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def main() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/v1.0/invoke/{app}/method/{m:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(main())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    monkeypatch.setenv("MECHA_INVOKE_URL", f"http://127.0.0.1:{port[0]}")
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    yield seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_invoke_service_forwards_and_maps(sidecar: Sidecar, fake_listener: list[dict[str, Any]]) -> None:
    with DaprClient() as client:
        resp = client.invoke_method(
            "orders",
            "api/v1/orders",
            data=b'{"n":1}',
            content_type="application/json",
            http_verb="PUT",
            http_querystring=(("limit", "5"),),
            metadata=(("x-tenant", "acme"),),
        )
        assert resp.data == b'{"ok":true}'
        assert resp.content_type.startswith("application/json")
        sent = fake_listener[-1]
        assert sent["method"] == "PUT"
        assert sent["path"] == "/v1.0/invoke/orders/method/api/v1/orders?limit=5"
        assert sent["body"] == b'{"n":1}'
        assert sent["headers"]["x-tenant"] == "acme"
        assert sent["headers"]["Content-Type"] == "application/json"

        with pytest.raises(grpc.RpcError) as err:  # the SDK does not wrap InvokeService errors
            client.invoke_method("orders", "fail", data=b"", http_verb="GET")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "no such order"
        assert ("dapr-http-status", "404") in (err.value.initial_metadata() or ())


def test_invoke_service_unreachable_target(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    from grpc_harness import free_port

    monkeypatch.setenv("MECHA_INVOKE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient() as client, pytest.raises(grpc.RpcError) as err:
        client.invoke_method("orders", "x", data=b"")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert DaprGrpcError(err.value).error_code() == "ERR_DIRECT_INVOKE"
