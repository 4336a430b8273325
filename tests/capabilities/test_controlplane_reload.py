"""Long-poll of the control plane's /api/v1/dapr: components appear, change, disappear; callbacks fire."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from capability_testkit import component

from capabilities.config.settings import Settings
from capabilities.runtime import Runtime


class FakeControlPlane:
    def __init__(self) -> None:
        self.version = 1
        self.payload: dict[str, Any] = {"components": [component("s1", "state.in-memory")]}
        self.changed = asyncio.Condition()
        self.waits: list[str] = []

    async def publish(self, payload: dict[str, Any]) -> None:
        async with self.changed:
            self.version += 1
            self.payload = payload
            self.changed.notify_all()

    async def handle(self, request: web.Request) -> web.Response:
        wait = request.query.get("wait", "")
        self.waits.append(wait)
        async with self.changed:
            if wait == str(self.version):
                try:
                    await asyncio.wait_for(self.changed.wait(), 5)
                except TimeoutError:
                    return web.Response(status=304)
        return web.json_response({"version": str(self.version), **self.payload})


async def test_components_follow_the_control_plane() -> None:
    cp = FakeControlPlane()
    app = web.Application()
    app.router.add_get("/api/v1/dapr", cp.handle)
    server = TestServer(app)
    await server.start_server()
    runtime = Runtime(Settings(app_id="a", control_plane=str(server.make_url("")).rstrip("/")))
    changes: list[list[str]] = []
    runtime.on_config_change(lambda rt: changes.append(sorted(s.name for s in rt.component_specs)))
    try:
        await runtime.start()
        await asyncio.wait_for(runtime.components_ready.wait(), 5)
        assert list(runtime.components("state")) == ["s1"]
        first = runtime.component("state", "s1")

        await cp.publish(
            {"components": [component("s1", "state.in-memory"), component("l1", "lock.in-memory")]}
        )
        async with asyncio.timeout(5):
            while "l1" not in runtime.components("lock"):  # noqa: ASYNC110 - polls/spawns outside asyncio's view
                await asyncio.sleep(0.02)
        assert runtime.component("state", "s1") is first  # unchanged component kept, not re-created

        await cp.publish({"components": [component("s1", "state.in-memory", keyPrefix="none")]})
        async with asyncio.timeout(5):
            while "l1" in runtime.components("lock"):  # noqa: ASYNC110 - polls/spawns outside asyncio's view
                await asyncio.sleep(0.02)
        assert runtime.component("state", "s1") is not first  # changed metadata -> new instance
        assert runtime.component_spec("s1").metadata == {"keyPrefix": "none"}

        bad = {"components": [{"metadata": {"name": "x"}, "spec": {"type": "nodots"}}]}
        await cp.publish(bad)
        async with asyncio.timeout(5):
            while runtime._watcher.last_error is None:  # noqa: ASYNC110 - polls/spawns outside asyncio's view
                await asyncio.sleep(0.02)
        assert "spec.type" in runtime._watcher.last_error
        assert "s1" in runtime.components("state")  # last good configuration keeps serving
        assert ["s1"] in changes and ["l1", "s1"] in changes
        assert cp.waits[0] == ""
    finally:
        await runtime.stop()
        await server.close()
