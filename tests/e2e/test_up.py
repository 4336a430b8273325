"""`mecha up` as a user runs it: a subprocess in a scratch folder, then Ctrl-C; `mecha down` cleanup."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout, make_layout
from xds.runner.procs import pid_alive, port_in_use
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port

pytestmark = pytest.mark.e2e


def _free_offset() -> int:
    for _ in range(50):
        offset = random.randrange(1000, 14000)
        layout = default_layout("sidecar", offset)
        ports = [DEFAULT_API_PORT + offset, DEFAULT_XDS_PORT + offset, *layout.ports().values()]
        ports += [*layout.capability_ports().values(), *layout.gateway_ports().values()]
        if not any(port_in_use(p) for p in ports):
            return offset
    pytest.skip("could not find a free block of ports for `mecha up`")


def _read_until(proc: subprocess.Popen[str], needle: str, within: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + within
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; output so far:\n" + "\n".join(lines))


def test_up_serves_the_demo_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    offset = _free_offset()
    state = tmp_path / ".mecha"
    mecha = [sys.executable, "-m", "xds.cli"]
    proc = subprocess.Popen(
        [*mecha, "up", "--port-offset", str(offset)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        again = subprocess.run([*mecha, "up"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stdout
        assert info["productpage"] in again.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, rest
    assert "all processes stopped" in rest
    deadline = time.monotonic() + 5
    while any(pid_alive(c["pid"]) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [c["name"] for c in children if pid_alive(c["pid"])] == []
    assert not (state / "up.json").exists()


def test_down_with_nothing_running(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xds.cli", "down", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0 and "nothing to stop" in out.stdout


def test_down_kills_children_left_by_a_dead_supervisor(tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state = {"pid": 2**22 + 7, "children": [{"name": "x", "pid": orphan.pid, "argv0": "sleep"}]}
        (tmp_path / "up.json").write_text(json.dumps(state))
        out = subprocess.run(
            [sys.executable, "-m", "xds.cli", "down", "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
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
