"""A small aiohttp fake app for delivery tests: serves /dapr/subscribe and records what it is sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeApp:
    def __init__(self, subscriptions: list[dict[str, Any]] | None = None):
        self.subscriptions = subscriptions
        self.received: dict[str, list[dict[str, Any]]] = {}  # path -> JSON bodies
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.replies: dict[str, list[tuple[int, Any]]] = {}  # path -> queued (status, body) answers
        self.calls: list[tuple[str, str]] = []
        self.changed = asyncio.Event()
        self.server: TestServer | None = None

    def reply(self, path: str, *answers: tuple[int, Any]) -> None:
        """Queue answers for path; once used up the app answers 200 {"status": "SUCCESS"}."""
        self.replies.setdefault(path, []).extend(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls.append((request.method, path))
        if path == "/dapr/subscribe" and request.method == "GET":
            if self.subscriptions is None:
                return web.Response(status=404)
            return web.json_response(self.subscriptions)
        if request.method == "OPTIONS":
            return web.Response(status=200 if path in self.replies or path in self.received else 404)
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.received.setdefault(path, []).append(body)
        self.headers.setdefault(path, []).append(dict(request.headers))
        self.changed.set()
        queued = self.replies.get(path)
        if queued:
            status, answer = queued.pop(0)
            if answer is None:
                return web.Response(status=status)
            return web.json_response(answer, status=status)
        return web.json_response({"status": "SUCCESS"})

    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def fake_app() -> AsyncIterator[Callable[..., Any]]:
    apps: list[FakeApp] = []

    async def start(subscriptions: list[dict[str, Any]] | None = None) -> FakeApp:
        app = FakeApp(subscriptions)
        web_app = web.Application()
        web_app.router.add_route("*", "/{tail:.*}", app.handle)
        app.server = TestServer(web_app)
        await app.server.start_server()
        apps.append(app)
        return app

    yield start
    for app in apps:
        assert app.server is not None
        await app.server.close()
