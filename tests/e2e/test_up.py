"""`mecha up` as a user runs it: a subprocess in a scratch folder, then Ctrl-C; `mecha down` cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mecha_up import MECHA, free_offset, interrupt, listening_sockets, start_up
from mecha_up import read_until as _read_until

from xds.demo.config import make_layout
from xds.runner.procs import pid_alive
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port

pytestmark = pytest.mark.e2e


def test_up_serves_the_demo_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    offset = free_offset()
    state = tmp_path / ".mecha"
    proc = start_up(tmp_path, "--port-offset", str(offset))
    try:
        lines = _read_until(proc, "Mecha is up", 90)
        text = "\n".join(lines)
        assert "[ready] control plane" in text
        for name in ("ratings-v1", "reviews-v1", "reviews-v2", "productpage-v1"):
            assert f"[ready] app {name}" in text and f"[ready] envoy {name}" in text
        info = json.loads((state / "up.json").read_text())
        children = info["children"]
        assert all(pid_alive(c["pid"]) for c in children)
        with urllib.request.urlopen(info["productpage"], timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["app"] == "productpage" and body["reviews"]["status"] == 200
        assert body["reviews"]["body"]["version"] in ("v1", "v2")
        # The ingress gateway Envoy serves Gateway bookinfo-gateway: /productpage through it.
        assert "[ready] envoy ingressgateway" in text
        summary = _read_until(proc, "ingress gateway (port 80)", 10)[-1]
        assert summary.endswith(info["gateway"])
        with urllib.request.urlopen(info["gateway"], timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read())["app"] == "productpage"
        # A second `up` in the same folder reports instead of starting anything.
        again = subprocess.run([*MECHA, "up"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stdout
        assert info["productpage"] in again.stdout
    finally:
        rest = interrupt(proc, 30)
    assert rest is not None, "mecha up did not stop within 30 s of Ctrl-C (killed)"
    assert proc.returncode == 0, rest
    assert "all processes stopped" in rest
    deadline = time.monotonic() + 5
    while any(pid_alive(c["pid"]) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [c["name"] for c in children if pid_alive(c["pid"])] == []
    assert not (state / "up.json").exists()


def test_down_with_nothing_running(tmp_path: Path) -> None:
    out = subprocess.run(
        [*MECHA, "down", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "nothing to stop" in out.stdout


def test_down_kills_children_left_by_a_dead_supervisor(tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state = {"pid": 2**22 + 7, "children": [{"name": "x", "pid": orphan.pid, "argv0": "sleep"}]}
        (tmp_path / "up.json").write_text(json.dumps(state))
        out = subprocess.run(
            [*MECHA, "down", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0 and "killed 1 leftover" in out.stdout
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert not (tmp_path / "up.json").exists()
    finally:
        if orphan.poll() is None:
            os.kill(orphan.pid, signal.SIGKILL)
            orphan.wait()


async def test_stack_with_gateway_routes_productpage_through_it(tmp_path: Path) -> None:
    """`mecha up`'s Stack with the ingress gateway: /productpage on its port 80 listener reaches productpage;
    a path the bookinfo VirtualService does not route gets 404 from the gateway; stop() ends its Envoy."""
    layout = make_layout("sidecar", lambda _role, _index: free_port())
    assert layout.gateway is not None
    options = StackOptions(
        layout=layout,
        state_dir=tmp_path / ".mecha",
        api_port=free_port(),
        xds_port=free_port(),
        with_capabilities=False,
        with_gateway=True,
    )
    stack = Stack(options)
    try:
        await stack.start(60)
        url = stack.describe()["gateway"]
        assert url == f"http://127.0.0.1:{layout.gateway.http_port}/productpage"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as resp:
                assert resp.status == 200
                body = await resp.json(content_type=None)
            async with session.get(f"{layout.gateway.url}/reviews") as resp:
                not_routed = resp.status
        assert body["app"] == "productpage" and body["reviews"]["status"] == 200
        assert not_routed == 404
        gateway = next(c for c in stack.sup.children if c.name == "envoy-ingressgateway")
    finally:
        await stack.stop()
    assert not pid_alive(gateway.pid)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def _wait_for(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _child(state: Path, name: str) -> dict[str, Any]:
    info = json.loads((state / "up.json").read_text())
    return next(c for c in info["children"] if c["name"] == name)


def test_up_supervises_listens_on_loopback_keeps_files_private_and_restarts_at_once(tmp_path: Path) -> None:
    """One real `mecha up`: every listening socket of its processes is on loopback; state files 0600 in 0700
    folders; a killed control plane and capability service come back (printed, up.json updated) and `mecha
    down` stops the restarted ones; a second `mecha up` right after succeeds (TIME_WAIT is not "in use");
    SIGKILL of that supervisor leaves no child behind."""
    offset = free_offset()
    state = tmp_path / ".mecha"
    proc = start_up(tmp_path, "--port-offset", str(offset))
    second: subprocess.Popen[str] | None = None
    try:
        text = "\n".join(_read_until(proc, "Mecha is up", 120))
        assert "listens on 127.0.0.1 only" in text
        info = json.loads((state / "up.json").read_text())
        assert info["status"] == "up"
        pids = [c["pid"] for c in info["children"]]
        listening = listening_sockets(pids)
        assert len(listening) >= 20, listening  # control plane, apps, capability services, 5 Envoys
        wide = {addr: pid for addr, pid in listening.items() if not addr.startswith(("127.0.0.1:", "::1:"))}
        assert wide == {}, f"listening beyond loopback: {wide}"
        gateway_port = int(info["gateway"].split(":")[2].split("/")[0])
        assert f"127.0.0.1:{gateway_port}" in listening
        modes = _modes(state)
        assert {k: oct(m) for k, m in modes.items() if Path(state / k).is_dir() and m != 0o700} == {}
        assert {k: oct(m) for k, m in modes.items() if Path(state / k).is_file() and m != 0o600} == {}
        assert {"up.json", "bootstrap/ingressgateway.yaml", "logs/control-plane.log"} <= set(modes)

        for name in ("control-plane", "capabilities-reviews-v1"):
            old = _child(state, name)["pid"]
            os.kill(old, signal.SIGKILL)
            restarted = _read_until(proc, f"restarted {name}: pid", 30)
            assert any(f"warning: {name} (pid {old}) exited with code -9" in line for line in restarted)
            _wait_for(lambda n=name, o=old: _child(state, n)["pid"] != o, 10, f"{name} in up.json")
            assert _child(state, name)["restarts"] == 1
        api = info["api"]
        _wait_for(lambda: _answers(f"{api}/readyz"), 30, "the restarted control plane's /readyz")
        live = [c["pid"] for c in json.loads((state / "up.json").read_text())["children"]]

        down = subprocess.run([*MECHA, "down"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert proc.wait(timeout=30) == 0
        assert [pid for pid in live if pid_alive(pid)] == []

        # up again at once, same ports: the sockets the first run closed may sit in TIME_WAIT
        second = start_up(tmp_path, "--port-offset", str(offset))
        _read_until(second, "Mecha is up", 120)
        children = [c["pid"] for c in json.loads((state / "up.json").read_text())["children"]]
        second.kill()  # SIGKILL: no chance to clean up; PR_SET_PDEATHSIG stops the children
        second.wait(timeout=10)
        _wait_for(lambda: not any(pid_alive(pid) for pid in children), 60, "children of a killed supervisor")
    finally:
        for running in (proc, second):
            if running is not None and running.poll() is None:
                running.send_signal(signal.SIGINT)
                running.communicate(timeout=30)
        subprocess.run([*MECHA, "down"], cwd=tmp_path, capture_output=True, timeout=60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
