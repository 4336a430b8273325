"""A real `mecha up` as a user runs it, for the e2e tests that start one (test_up.py, test_cli_apps.py,
test_cli_up_start.py, ...): the command, a free block of ports for --port-offset, its output read line by
line, Ctrl-C at the end, the sockets its processes listen on."""

from __future__ import annotations

import ipaddress
import os
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


def listening_sockets(pids: list[int]) -> dict[str, int]:
    """Each `address:port` some TCP socket of pids LISTENs on (from /proc, like `ss -ltnp`), with its pid."""
    inodes: dict[str, int] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    found: dict[str, int] = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A: TCP_LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as host-order 32-bit words
            ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4)))
            ip = getattr(ip, "ipv4_mapped", None) or ip  # gRPC's [::ffff:127.0.0.1]
            found[f"{ip}:{int(hex_port, 16)}"] = inodes[inode]
    return found
