"""A real `mecha up` as a user runs it, for the e2e tests that start one (test_up.py, test_cli_apps.py,
test_cli_up_start.py, ...): the command, a free block of ports for --port-offset, its output read line by
line, Ctrl-C at the end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xds.testing import up_ports

MECHA = [sys.executable, "-m", "xds.cli"]


def free_offset(step: int = 1) -> int:
    """A --port-offset whose ports are all free (xds/testing/up_ports.py, shared with the benches); skips
    the test when none is found."""
    try:
        return up_ports.free_offset(step)
    except up_ports.NoFreeOffset as exc:
        pytest.skip(str(exc))


def start_up(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`mecha up ARGS` in cwd, stdout and stderr on one text pipe (read it with read_until)."""
    return subprocess.Popen(
        [*MECHA, "up", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def read_until(proc: subprocess.Popen[str], needle: str, within: float) -> list[str]:
    """Lines printed up to the first one containing needle; fails with the output when it does not come."""
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


def interrupt(proc: subprocess.Popen[str], within: float = 30) -> str | None:
    """Ctrl-C (SIGINT), then the rest of its output; None when it had to be killed after `within` s."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=within)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
