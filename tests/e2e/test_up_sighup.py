"""Closing the terminal sends `mecha up` SIGHUP: it stops everything it started in order (as Ctrl-C does) and
leaves no process and no stale state behind (issue #10: "closing the terminal (SIGHUP) ... must not leave 14
orphans"). Without the handler the supervisor dies of the signal and up.json stays."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mecha_up import free_offset, read_until

from xds.runner.procs import pid_alive

pytestmark = pytest.mark.e2e


def test_sighup_stops_every_child_in_order(tmp_path: Path) -> None:
    offset = free_offset()
    state = tmp_path / ".mecha"
    mecha = [sys.executable, "-m", "xds.cli"]
    proc = subprocess.Popen(
        [*mecha, "up", "--port-offset", str(offset)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # as a terminal's job: the signal reaches the supervisor only
    )
    try:
        read_until(proc, "Mecha is up", 120)
        children = [c["pid"] for c in json.loads((state / "up.json").read_text())["children"]]
        assert len(children) >= 10, children
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 0, "the supervisor must stop in order, not die of SIGHUP"
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in children if pid_alive(pid)] == []
        assert not (state / "up.json").exists(), "an orderly stop removes its pid file"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        subprocess.run([*mecha, "down"], cwd=tmp_path, capture_output=True, timeout=60)
