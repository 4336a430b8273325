"""`python -m capabilities` as a process: serves, gets ready, stops on /v1.0/shutdown; bad config exits 1."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from xds.testing.envoy import free_port

REPO = Path(__file__).resolve().parents[2]


def status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=1) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


# Serving, readiness and /v1.0/shutdown on either event loop: test_hot_path.py.


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
