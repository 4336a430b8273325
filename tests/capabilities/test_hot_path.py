"""Start-up and hot-path choices of the capability service: the event loop it runs on (uvloop when installed,
MECHA_EVENT_LOOP=asyncio to opt out), the state route table (one resource per path, hot paths first) and the
imports kept off the start-up path (YAML, gRPC app delivery)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from capability_testkit import component

from capabilities.eventloop import ENV, loop_factory, loop_name
from xds.testing.envoy import free_port

REPO = Path(__file__).resolve().parents[2]
STATE = component("statestore", "state.in-memory")


def _status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_loop_factory_prefers_uvloop_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(ENV, raising=False)
    loop = loop_factory()()
    try:
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()
    monkeypatch.setenv(ENV, "asyncio")
    loop = loop_factory()()
    try:
        assert loop_name(loop) == "asyncio"
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()
    monkeypatch.setenv(ENV, "trio")
    with pytest.raises(ValueError, match="MECHA_EVENT_LOOP"):
        loop_factory()


@pytest.mark.parametrize("choice", ["", "asyncio"])
def test_process_serves_on_either_loop_and_says_which(tmp_path: Path, choice: str) -> None:
    if choice == "":
        pytest.importorskip("uvloop")
    (tmp_path / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "capabilities", "--app-id", "p", "--dapr-http-port", str(port),
           "--dapr-grpc-port", str(free_port()), "--resources-path", str(tmp_path)]  # fmt: skip
    env = {**os.environ, ENV: choice}
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _status(f"http://127.0.0.1:{port}/v1.0/healthz/outbound") == 204:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert _status(f"http://127.0.0.1:{port}/v1.0/state/s/missing") == 204
        assert _status(f"http://127.0.0.1:{port}/v1.0/shutdown", "POST") == 204
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = "asyncio" if choice == "asyncio" else "uvloop"
    assert f"{expected} loop)" in log.read_text()


async def test_state_routes_answer_by_path_and_method(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([STATE])
    for method in ("POST", "PUT"):  # save answers both methods on one resource
        resp = await client.request(method, "/v1.0/state/statestore", json=[{"key": "bulk", "value": method}])
        assert resp.status == 204, await resp.text()
    resp = await client.get("/v1.0/state/statestore/bulk")  # GET .../bulk is the key "bulk", not bulk get
    assert resp.status == 200 and await resp.json() == "PUT"
    resp = await client.post("/v1.0/state/statestore/bulk", json={"keys": ["bulk"]})
    assert resp.status == 200 and (await resp.json())[0]["data"] == "PUT"
    resp = await client.put("/v1.0/state/statestore/transaction", json={"operations": []})
    assert resp.status == 204
    resp = await client.post("/v1.0/state/statestore/k1", data=b"[]")  # no POST on a key: 405 names GET
    body = await resp.json()
    assert resp.status == 405 and body["errorCode"] == "ERR_METHOD_NOT_ALLOWED"
    assert "DELETE" in body["message"] and "GET" in body["message"]
    resp = await client.delete("/v1.0/state/statestore/bulk")
    assert resp.status == 204
    assert (await client.get("/v1.0/state/statestore/bulk")).status == 204


def test_start_up_imports_leave_out_yaml_and_grpc_app_delivery() -> None:
    code = (
        "import sys\n"
        "import capabilities.__main__, capabilities.runtime, capabilities.api.http.app\n"
        "import capabilities.api.grpc.server, capabilities.config.controlplane\n"
        "mods = ('yaml', 'capabilities.delivery.grpc.app', 'capabilities.delivery.grpc.topics')\n"
        "print(','.join(m for m in mods if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
