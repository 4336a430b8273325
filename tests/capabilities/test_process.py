"""`python -m capabilities` as a process: serves, gets ready, stops on /v1.0/shutdown; bad config exits 1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_process_serves_and_shuts_down(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "capabilities", "--app-id", "p", "--dapr-http-port", str(port),
           "--resources-path", str(tmp_path), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if status(f"http://127.0.0.1:{port}/v1.0/healthz/outbound") == 204:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "service never became ready"
            time.sleep(0.02)
        assert status(f"http://127.0.0.1:{port}/v1.0/state/s/missing") == 204
        assert status(f"http://127.0.0.1:{port}/v1.0/shutdown", "POST") == 204
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_resources_exit_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: Component\nmetadata: {name: b}\nspec: {type: nodot}\n")
    cmd = [sys.executable, "-m", "capabilities", "--app-id", "p", "--dapr-http-port", str(free_port()),
           "--resources-path", str(tmp_path)]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr and "spec.type" in result.stderr


@pytest.mark.parametrize("flag", ["--dapr-http-port"])
def test_bad_arguments(flag: str) -> None:
    cmd = [sys.executable, "-m", "capabilities", flag, "abc"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2 and "invalid int value" in result.stderr
