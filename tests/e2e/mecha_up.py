"""A real `mecha up` as a user runs it, for the e2e tests that start one (test_up.py, test_cli_apps.py,
test_cli_up_start.py, ...): the command, a free block of ports for --port-offset, its output read line by
line, Ctrl-C at the end."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout
from xds.runner.procs import port_in_use

MECHA = [sys.executable, "-m", "xds.cli"]


def up_ports(offset: int) -> list[int]:
    """Every port `mecha up --port-offset OFFSET` binds (control plane, apps, Envoys, capability services,
    ingress gateway)."""
    layout = default_layout("sidecar", offset)
    ports = [DEFAULT_API_PORT + offset, DEFAULT_XDS_PORT + offset, *layout.ports().values()]
    return [*ports, *layout.capability_ports().values(), *layout.gateway_ports().values()]


def free_offset() -> int:
    """A --port-offset whose ports are all free (skips the test when 50 tries find none)."""
    for _ in range(50):
        offset = random.randrange(1000, 14000)
        if not any(port_in_use(p) for p in up_ports(offset)):
            return offset
    pytest.skip("could not find a free block of ports for `mecha up`")


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
