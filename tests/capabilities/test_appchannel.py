"""App channel: calls the app, adds dapr-api-token when APP_API_TOKEN is set, clear error when unreachable."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from capabilities.appchannel import AppChannel, AppChannelError


async def test_call_adds_app_token_and_returns_response() -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.Response(status=201, body=await request.read(), headers={"X-Reply": "1"})

    app = web.Application()
    app.router.add_post("/hook", handler)
    server = TestServer(app)
    await server.start_server()
    channel = AppChannel(str(server.make_url("")), app_api_token="app-secret")
    try:
        resp = await channel.call("POST", "/hook", body=b"hello", headers={"X-Test": "y"}, timeout=5)
        assert (resp.status, resp.body, resp.headers["X-Reply"]) == (201, b"hello", "1")
        assert seen["dapr-api-token"] == "app-secret" and seen["X-Test"] == "y"
        assert channel.ready.is_set()
    finally:
        await channel.close()
        await server.close()


async def test_unreachable_app_and_unconfigured_channel(unused_tcp_port: int) -> None:
    channel = AppChannel(f"http://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(AppChannelError, match=str(unused_tcp_port)):
        await channel.call("GET", "/x", timeout=2)
    await channel.close()
    with pytest.raises(AppChannelError, match="not initialized"):
        await AppChannel(None).call("GET", "/x")
