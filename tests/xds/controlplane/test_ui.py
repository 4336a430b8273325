"""The dashboard at /ui (real ControlPlane, real aiohttp server): login by one-time code, what the session
cookie may and may not do (attacker's view), DNS rebinding, and what the state answer holds."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from xds.controlplane.api import start_api
from xds.controlplane.auth import API_TOKEN_FILE, READER_TOKEN_FILE
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.controlplane.ui import COOKIE
from xds.demo.config import default_layout, demo_config, demo_documents

# demo_registration: the WorkloadEntries the demo's sidecars register (a helper of the security tests)
sys.path.append(str(Path(__file__).resolve().parents[1] / "security"))
from demo_registration import registered_json_documents

YAML = {"Content-Type": "application/yaml"}
BAD_VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {regex: "(unclosed"}}], route: [{destination: {host: reviews}}]}]
"""


@dataclass
class Ui:
    cp: ControlPlane
    url: str
    state: Path

    def bearer(self, name: str = API_TOKEN_FILE) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.state / name).read_text().strip()}"}

    async def code(self, session: aiohttp.ClientSession) -> str:
        async with session.post(self.url + "/api/v1/ui/code", headers=self.bearer()) as resp:
            assert resp.status == 200
            return (await resp.json())["code"]


@pytest_asyncio.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    state = tmp_path / "state"
    cp = ControlPlane(Settings(api_port=0, xds_port=0, state_dir=state, watch=False))
    runner, port = await start_api(cp, "127.0.0.1", 0, state)
    await cp.start()
    try:
        yield Ui(cp, f"http://127.0.0.1:{port}", state)
    finally:
        await cp.stop()
        await runner.cleanup()


def _browser() -> aiohttp.ClientSession:
    # unsafe=True: the cookie jar keeps cookies of an IP-literal host (127.0.0.1), as a browser does
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login(ui: Ui, browser: aiohttp.ClientSession) -> None:
    async with aiohttp.ClientSession() as cli:
        code = await ui.code(cli)
    async with browser.get(f"{ui.url}/ui/login?code={code}", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/"
        cookie = resp.headers["Set-Cookie"]
        assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/ui" in cookie


async def test_without_login_every_ui_path_is_401(ui: Ui) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/ui/", "/ui/api/state", "/ui/index.html", "/ui/dashboard.js"):
            async with anonymous.get(ui.url + path) as resp:
                assert resp.status == 401, path


async def test_login_code_is_single_use_and_the_cookie_reads_the_dashboard(ui: Ui) -> None:
    async with aiohttp.ClientSession() as cli:
        code = await ui.code(cli)
    async with _browser() as browser:
        async with browser.get(f"{ui.url}/ui/login?code={code}") as resp:  # follows the redirect
            assert resp.status == 200 and "<svg" in await resp.text()
        async with browser.get(ui.url + "/ui/api/state") as resp:
            assert resp.status == 200 and "graph" in await resp.json()
    async with _browser() as thief:  # the same URL from the browser's history
        async with thief.get(f"{ui.url}/ui/login?code={code}", allow_redirects=False) as resp:
            assert resp.status == 401
        async with thief.get(ui.url + "/ui/api/state") as resp:
            assert resp.status == 401
    async with _browser() as guesser:
        async with guesser.get(f"{ui.url}/ui/login?code=guess", allow_redirects=False) as resp:
            assert resp.status == 401


async def test_the_session_cookie_cannot_write_or_read_the_api(ui: Ui) -> None:
    """CSRF and privilege: the cookie is a read-only dashboard credential, not the operator's token."""
    async with _browser() as browser:
        await _login(ui, browser)
        session = next(c.value for c in browser.cookie_jar if c.key == COOKIE)
        forged = {"Cookie": f"{COOKIE}={session}", **YAML}
        async with aiohttp.ClientSession() as attacker:
            before = ui.cp.store.version
            async with attacker.post(ui.url + "/api/v1/apply", data=BAD_VS, headers=forged) as resp:
                assert resp.status == 401
            for path in ("/api/v1/config", "/api/v1/dapr", "/metrics"):
                async with attacker.get(ui.url + path, headers=forged) as resp:
                    assert resp.status == 401, path
            async with attacker.post(ui.url + "/api/v1/ui/code", headers=forged) as resp:
                assert resp.status == 401  # a session cannot mint itself new codes
            assert ui.cp.store.version == before


async def test_reader_token_cannot_mint_a_login_code(ui: Ui) -> None:
    async with aiohttp.ClientSession() as reader:
        async with reader.post(ui.url + "/api/v1/ui/code", headers=ui.bearer(READER_TOKEN_FILE)) as resp:
            assert resp.status == 403


async def test_dns_rebinding_host_is_refused_on_ui_and_login(ui: Ui) -> None:
    async with _browser() as browser:
        await _login(ui, browser)
        for path in ("/ui/api/state", "/ui/login?code=x"):
            async with browser.get(ui.url + path, headers={"Host": "evil.example:80"}) as resp:
                assert resp.status == 421, path


async def test_state_shows_demo_graph_with_weights_and_the_last_refused_change(ui: Ui) -> None:
    layout = default_layout("sidecar")
    # the sidecars register their endpoints through WorkloadGroups: apply the entries they would write
    registered = registered_json_documents(demo_config(layout), layout)
    docs = "\n---\n".join([json.dumps(d) for d in demo_documents(layout)] + registered)
    async with aiohttp.ClientSession() as cli:
        async with cli.post(ui.url + "/api/v1/apply", data=docs, headers={**YAML, **ui.bearer()}) as resp:
            assert resp.status == 200, await resp.text()
        async with cli.post(ui.url + "/api/v1/apply", data=BAD_VS, headers={**YAML, **ui.bearer()}) as resp:
            assert resp.status == 422
    async with _browser() as browser:
        await _login(ui, browser)
        async with browser.get(ui.url + "/ui/api/state") as resp:
            state: dict[str, Any] = await resp.json()
    labels = {n["label"] for n in state["graph"]["nodes"]}
    assert {"productpage", "reviews", "ratings", "reviews v1", "reviews v2"} <= labels
    weights = {
        e["to"]: [r["weight"] for r in e.get("routes", [])]
        for e in state["graph"]["edges"]
        if e["from"] == "svc:reviews"
    }
    assert 80 in weights["wl:reviews:v1"] and 20 in weights["wl:reviews:v2"]
    refused = state["last_refused"]
    assert refused is not None and not refused["accepted"]
    assert any("regex" in d["message"] for d in refused["diagnostics"]), refused
    assert state["history"] and state["history"][-1]["version"] == state["version"]
