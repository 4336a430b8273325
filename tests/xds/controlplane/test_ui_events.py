"""The dashboard's live feed, /ui/api/events (real ControlPlane, real aiohttp server): server-sent events
that carry a config change within a fraction of a second of the API's answer, the session cookie only, the
same redaction as every JSON answer, a server that still stops at once with a page open, and one build of
the state per change shared by every open page."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from xds.controlplane import ui
from xds.controlplane.api import start_api
from xds.controlplane.auth import API_TOKEN_FILE
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.controlplane.ui import UI_SESSIONS
from xds.redact import REDACTED

YAML = {"Content-Type": "application/yaml"}
SECRET = "S3cret-4a1b9"
COMPONENT = f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: cache, namespace: default}}
spec:
  type: state.redis
  version: v1
  metadata: [{{name: redisHost, value: "127.0.0.1:6379"}}, {{name: redisPassword, value: "{SECRET}"}}]
"""
# refused, and its diagnostic quotes the regex: the known secret value inside it must not reach the page
BAD_VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: broken}}
spec:
  hosts: [reviews]
  http: [{{match: [{{uri: {{regex: "({SECRET}"}}}}], route: [{{destination: {{host: reviews}}}}]}}]
"""


def service(name: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}]
  http: [{{route: [{{destination: {{host: {name}}}}}]}}]
"""


@dataclass
class Server:
    cp: ControlPlane
    url: str
    state: Path
    runner: Any

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.state / API_TOKEN_FILE).read_text().strip()}"}

    async def apply(self, text: str, path: str = "/api/v1/apply") -> int:
        async with aiohttp.ClientSession() as cli:
            async with cli.post(self.url + path, data=text, headers={**YAML, **self.bearer()}) as resp:
                await resp.read()
                return resp.status

    async def browser(self) -> aiohttp.ClientSession:
        """A session logged in as `mecha dashboard` does it (one-time code -> cookie)."""
        async with aiohttp.ClientSession() as cli:
            async with cli.post(self.url + "/api/v1/ui/code", headers=self.bearer()) as resp:
                code = (await resp.json())["code"]
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # IP-literal host
        async with browser.get(f"{self.url}/ui/login?code={code}", allow_redirects=False) as resp:
            assert resp.status == 303
        return browser


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    state = tmp_path / "state"
    cp = ControlPlane(Settings(api_port=0, xds_port=0, state_dir=state, watch=False))
    runner, port = await start_api(cp, "127.0.0.1", 0, state)
    await cp.start()
    try:
        yield Server(cp, f"http://127.0.0.1:{port}", state, runner)
    finally:
        await cp.stop()
        await runner.cleanup()


async def next_state(resp: aiohttp.ClientResponse, within: float = 5.0) -> dict[str, Any]:
    """The next `data:` event of the stream."""
    async with asyncio.timeout(within):
        while True:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                return json.loads(line[len("data: ") :])


async def test_events_need_the_dashboard_session(server: Server) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(server.url + "/ui/api/events") as resp:
            assert resp.status == 401


async def test_a_config_change_is_pushed_within_a_fraction_of_a_second(server: Server) -> None:
    async with await server.browser() as browser:
        async with browser.get(server.url + "/ui/api/events") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-store"
            first = await next_state(resp)
            assert {"version", "graph", "proxies", "history", "dapr"} <= set(first)
            for name in ("live-a", "live-b"):
                assert await server.apply(service(name)) == 200
                answered = time.monotonic()
                while True:
                    state = await next_state(resp)
                    if any(n["id"] == f"svc:{name}" for n in state["graph"]["nodes"]):
                        break
                # pushed on the change, not at the next once-a-second resend
                assert time.monotonic() - answered < 0.5, name
            assert state["version"] > first["version"]
            assert state["history"][-1]["version"] == state["version"]


async def test_the_stream_is_redacted_as_the_state_answer(server: Server) -> None:
    assert await server.apply(COMPONENT) == 200
    assert await server.apply(BAD_VS) == 422
    async with await server.browser() as browser:
        async with browser.get(server.url + "/ui/api/state") as resp:
            answered = await resp.text()
        async with browser.get(server.url + "/ui/api/events") as resp:
            pushed = await next_state(resp)
    assert SECRET not in answered and SECRET not in json.dumps(pushed)
    refused = json.dumps(pushed["last_refused"])
    assert REDACTED in refused and refused == json.dumps(json.loads(answered)["last_refused"])


async def test_an_open_page_does_not_hold_the_server_when_it_stops(server: Server) -> None:
    browser = await server.browser()
    try:
        resp = await browser.get(server.url + "/ui/api/events")
        await next_state(resp)
        started = time.monotonic()
        await server.runner.cleanup()  # aiohttp would wait up to 60 s for a handler still streaming
        assert time.monotonic() - started < 5.0
        resp.close()
    finally:
        await browser.close()


async def rest_of_stream(resp: aiohttp.ClientResponse, within: float) -> list[str]:
    """The stream's remaining `data:` lines, until the server ends it (TimeoutError if it does not)."""
    pushed: list[str] = []
    async with asyncio.timeout(within):
        while line := (await resp.content.readline()).decode():
            if line.startswith("data: "):
                pushed.append(line)
    return pushed


@pytest.mark.parametrize("how", ["expired", "removed"])
async def test_the_stream_ends_with_its_session(server: Server, how: str) -> None:
    """The cookie is checked once when the stream opens; a page opened just before the session ends must
    not keep receiving the mesh's state after it."""
    sessions = server.runner.app[UI_SESSIONS].sessions
    async with await server.browser() as browser:
        async with browser.get(server.url + "/ui/api/events") as resp:
            await next_state(resp)
            (cookie,) = sessions
            if how == "expired":
                sessions[cookie] = time.monotonic() - 1.0
            else:
                del sessions[cookie]
            # the next resend is RESEND_S away: none of it may arrive, and the stream ends within a second
            assert await rest_of_stream(resp, within=1.0) == []


async def test_a_bearer_stream_does_not_depend_on_dashboard_sessions(server: Server) -> None:
    sessions = server.runner.app[UI_SESSIONS].sessions
    async with await server.browser(), aiohttp.ClientSession() as cli:
        async with cli.get(server.url + "/ui/api/events", headers=server.bearer()) as resp:
            assert resp.status == 200
            await next_state(resp)
            sessions.clear()  # the browser's session (a cookie on another client) goes away
            await next_state(resp, within=3.0)  # the token's stream still gets the once-a-second resend


LONG_S = 60.0  # a period no test below waits for: what arrives came from a wake-up, not a tick


@dataclass
class Builds:
    """Counts the event bodies the server builds (ui._body), by the config version each one shows."""

    versions: list[int] = field(default_factory=list)
    grew: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, version: int) -> int:
        return self.versions.count(version)

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(5.0):
            while len(self.versions) < count:
                self.grew.clear()
                await self.grew.wait()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Builds:
    counted = Builds()
    build = ui._body

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = build(*args, **kwargs)
        counted.versions.append(body["version"])
        counted.grew.set()
        return body

    monkeypatch.setattr(ui, "_body", counting)
    return counted


def without_periodic_wakes(server: Server) -> None:
    """The feed's tick, resend and probe periods made long: only a change's own wake-up can push it."""
    live = server.runner.app[ui.LIVE]
    live.tick_s = live.resend_s = live.probe_every_s = LONG_S


async def settled(builds: Builds) -> None:
    """Until the feed has made its second build, the one its first probe's end wakes it for: from then on
    only a config change wakes it (the version it waits on was read before that build)."""
    await builds.reach(2)


async def state_showing(resp: aiohttp.ClientResponse, name: str) -> dict[str, Any]:
    while True:
        state = await next_state(resp)
        if any(n["id"] == f"svc:{name}" for n in state["graph"]["nodes"]):
            return state


async def test_open_streams_share_one_build_per_change(server: Server, builds: Builds) -> None:
    """Four open pages (two cookie sessions, two bearer readers: the same redacted view) cost one build of
    the state per change, not one per page, and every page still receives every change."""
    without_periodic_wakes(server)
    async with AsyncExitStack() as stack:
        streams = []
        for reader in ("cookie", "cookie", "bearer", "bearer"):
            if reader == "cookie":
                cli, headers = await stack.enter_async_context(await server.browser()), {}
            else:
                cli, headers = await stack.enter_async_context(aiohttp.ClientSession()), server.bearer()
            resp = await stack.enter_async_context(cli.get(server.url + "/ui/api/events", headers=headers))
            assert resp.status == 200
            streams.append(resp)
        firsts = [await next_state(resp) for resp in streams]
        assert all(first == firsts[0] for first in firsts)  # one build, sent to each page
        await settled(builds)
        for name in ("shared-a", "shared-b"):
            assert await server.apply(service(name)) == 200
            received = await asyncio.gather(*(state_showing(resp, name) for resp in streams))
            assert all(state == received[0] for state in received), name  # the very same event
            assert builds.of(received[0]["version"]) == 1, name


async def test_a_change_is_pushed_by_its_wake_up_not_the_next_tick(server: Server, builds: Builds) -> None:
    """With every periodic wake LONG_S away, a change still reaches an open page at once: the feed wakes on
    the version change and the stream on the feed's event (a lost wake-up waits for the tick)."""
    without_periodic_wakes(server)
    async with await server.browser() as browser:
        async with browser.get(server.url + "/ui/api/events") as resp:
            first = await next_state(resp)
            await settled(builds)
            assert await server.apply(service("woken")) == 200
            try:
                async with asyncio.timeout(LONG_S / 6):
                    state = await state_showing(resp, "woken")
            except TimeoutError:
                pytest.fail(f"the change was not pushed by its wake-up (the next tick is {LONG_S} s away)")
            assert state["version"] > first["version"]


async def test_a_page_opened_after_the_feed_stopped_gets_the_state(server: Server) -> None:
    """The feed stops when its last page leaves and starts again for the next one; the new page must get the
    fresh feed's first event (the stream spun without yielding while that event was not yet published, which
    froze the whole control plane)."""
    async with aiohttp.ClientSession() as cli:
        async with cli.get(server.url + "/ui/api/events", headers=server.bearer()) as resp:
            await next_state(resp)
        live = server.runner.app[ui.LIVE]
        async with asyncio.timeout(5):
            while live.feed_running():  # noqa: ASYNC110 - polled: the feed has no "stopped" event
                await asyncio.sleep(0.05)
        async with cli.get(server.url + "/ui/api/events", headers=server.bearer()) as resp:
            assert {"version", "graph"} <= set(await next_state(resp))
        async with cli.get(server.url + "/readyz") as resp:  # the control plane still answers
            assert resp.status == 200
