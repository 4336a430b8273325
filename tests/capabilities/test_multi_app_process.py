"""Node mode of the capability service: several apps (runtimes) in one process, shared component pools."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from capabilities.__main__ import AppSpec, app_settings_from_args, parse_app_spec, parse_args
from capabilities.daprspec.component import ComponentSpec
from capabilities.runtime import Runtime
from capabilities.shared_components import SharedComponents, share_key
from xds.testing.envoy import free_port

REPO = Path(__file__).resolve().parents[2]


# ---- --app parsing -------------------------------------------------------------------------------------


def test_app_spec_keeps_the_colons_of_the_url() -> None:
    assert parse_app_spec("orders:3500:50001:http://127.0.0.1:9080") == AppSpec(
        "orders", 3500, 50001, "http://127.0.0.1:9080"
    )
    assert parse_app_spec("cron-only:3501:0:") == AppSpec("cron-only", 3501, 0, None)
    assert parse_app_spec("quiet:3502:0") == AppSpec("quiet", 3502, 0, None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("orders", "expected APPID:HTTP_PORT:GRPC_PORT:APP_URL"),
        (":3500:0:", "APPID is empty"),
        ("a:http:0:", "HTTP_PORT 'http' is not a port number"),
        ("a:0:0:", "HTTP_PORT 0 is out of range 1-65535"),
        ("a:3500:70000:", "GRPC_PORT 70000 is out of range"),
        ("a:3500:0:127.0.0.1:9080", "APP_URL '127.0.0.1:9080' must start with http://"),
    ],
)
def test_bad_app_spec_names_the_field(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_app_spec(text)


def test_each_app_gets_the_shared_flags_and_its_own_ports() -> None:
    args = parse_args(
        ["--app", "a:3500:50001:http://127.0.0.1:9080", "--app", "b:3501:0:",
         "--control-plane", "http://cp:15010", "--max-body-bytes", "1000"]
    )  # fmt: skip
    first, second = app_settings_from_args(args)
    assert (first.app_id, first.http_port, first.grpc_port, first.app_url) == (
        "a", 3500, 50001, "http://127.0.0.1:9080",
    )  # fmt: skip
    assert (second.app_id, second.http_port, second.grpc_port, second.app_url) == ("b", 3501, 0, None)
    assert {s.control_plane for s in (first, second)} == {"http://cp:15010"}
    assert {s.max_body_bytes for s in (first, second)} == {1000}


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--app", "a:3500:0:", "--app-id", "x"], "--app-id cannot be combined with --app"),
        (["--app", "a:3500:0:", "--app", "b:3500:0:"], "port 3500 is also used by --app 'a:3500:0:'"),
        (["--app", "a:3500:50001:", "--app", "b:3501:50001:"], "port 50001 is also used"),
    ],
)
def test_conflicting_app_flags_are_refused(argv: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        app_settings_from_args(parse_args(argv))


def test_a_bad_app_flag_exits_2_with_the_reason() -> None:
    cmd = [sys.executable, "-m", "capabilities", "--app", "a:nope:0:"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "HTTP_PORT 'nope' is not a port number" in result.stderr


# ---- shared component instances ------------------------------------------------------------------------


class _Fake:
    def __init__(self, spec: ComponentSpec) -> None:
        self.spec, self.closed = spec, 0

    async def close(self) -> None:
        self.closed += 1


async def test_identical_state_specs_share_one_instance_until_the_last_release() -> None:
    pool, made = SharedComponents(), []

    async def create(spec: ComponentSpec) -> _Fake:
        await asyncio.sleep(0.01)  # both acquirers wait for the same init
        made.append(_Fake(spec))
        return made[-1]

    async def close(instance: Any) -> None:
        await instance.close()

    spec = ComponentSpec("store", "state.redis", metadata={"redisHost": "r:6379"})
    a, b = await asyncio.gather(pool.acquire(spec, create), pool.acquire(spec, create))
    assert a is b and len(made) == 1 and pool.users(a) == 2
    other = await pool.acquire(ComponentSpec("store", "state.redis", metadata={"redisHost": "s:1"}), create)
    assert other is not a  # another backend address: its own instance
    await pool.release(a, close)
    assert a.closed == 0
    await pool.release(b, close)
    assert a.closed == 1 and pool.users(a) == 0


async def test_pubsub_and_bindings_are_never_shared() -> None:
    assert share_key(ComponentSpec("p", "pubsub.redis")) is None
    assert share_key(ComponentSpec("b", "bindings.cron")) is None
    assert share_key(ComponentSpec("s", "state.redis")) is not None
    pool = SharedComponents()

    async def create(spec: ComponentSpec) -> _Fake:
        return _Fake(spec)

    spec = ComponentSpec("p", "pubsub.in-memory")
    assert await pool.acquire(spec, create) is not await pool.acquire(spec, create)


async def test_a_failed_init_is_reported_to_every_waiter_and_retried_later() -> None:
    pool, calls = SharedComponents(), []

    async def create(spec: ComponentSpec) -> _Fake:
        calls.append(spec)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("backend down")
        return _Fake(spec)

    spec = ComponentSpec("s", "state.redis")
    results = await asyncio.gather(
        pool.acquire(spec, create), pool.acquire(spec, create), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results) and len(calls) == 1
    assert isinstance(await pool.acquire(spec, create), _Fake) and len(calls) == 2


async def test_two_runtimes_share_a_store_but_not_their_keys(tmp_path: Path) -> None:
    from capabilities.config.settings import Settings

    (tmp_path / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    )
    (tmp_path / "mine.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: mine}\n"
        "spec: {type: state.in-memory}\nscopes: [a]\n"
    )
    pool = SharedComponents()
    runtimes = [
        Runtime(Settings(app_id=name, resources_paths=[str(tmp_path)]), shared=pool) for name in ("a", "b")
    ]
    for runtime in runtimes:
        await runtime.start()
    try:
        store_a, store_b = (r.component("state", "s") for r in runtimes)
        assert store_a is store_b and pool.users(store_a) == 2
        # scopes stay per app id: only a loads its private store
        assert [sorted(r.components("state")) for r in runtimes] == [["mine", "s"], ["s"]]
    finally:
        await runtimes[0].stop()
        assert pool.users(store_b) == 1  # b still holds it
        await runtimes[1].stop()
        assert pool.users(store_b) == 0


# ---- the process -----------------------------------------------------------------------------------------


def _request(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, "the process exited"
        try:
            if _request(f"http://127.0.0.1:{port}/v1.0/healthz/outbound")[0] == 204:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"app on port {port} never became ready"
        time.sleep(0.05)


def test_one_process_serves_two_apps_with_their_own_ids_and_keys(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    )
    ports = {"a": free_port(), "b": free_port()}
    cmd = [sys.executable, "-m", "capabilities", "--resources-path", str(tmp_path), "--log-level", "warning"]
    for app, port in ports.items():
        cmd += ["--app", f"{app}:{port}:0:"]
    proc = subprocess.Popen(cmd, cwd=REPO)
    try:
        for port in ports.values():
            _wait_ready(port, proc)
        for app, port in ports.items():
            base = f"http://127.0.0.1:{port}/v1.0"
            assert _request(f"{base}/metadata")[1]["id"] == app
            assert _request(f"{base}/state/s", "POST", [{"key": "k", "value": app}])[0] == 204
        for app, port in ports.items():  # one store instance, two key prefixes
            assert _request(f"http://127.0.0.1:{port}/v1.0/state/s/k") == (200, app)
        # shutting one app down leaves the other serving
        assert _request(f"http://127.0.0.1:{ports['a']}/v1.0/shutdown", "POST")[0] == 204
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _request(f"http://127.0.0.1:{ports['a']}/v1.0/healthz")
            except OSError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("app a still answers after its shutdown")
        assert _request(f"http://127.0.0.1:{ports['b']}/v1.0/state/s/k") == (200, "b")
        proc.send_signal(signal.SIGTERM)  # stops every app
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_taken_port_stops_every_app_with_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "capabilities", "--app", f"a:{free_port()}:0:", "--app", f"b:{busy}:0:"]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "app 'b': HTTP API not started" in result.stderr and str(busy) in result.stderr
