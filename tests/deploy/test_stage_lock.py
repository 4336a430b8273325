"""The container stage's machine lock (containers_harness.stage_lock): a second stage waits, then fails naming
the holder, instead of removing the first one's projects; a killed holder's lock is free at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from containers_harness import stage_lock

HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from containers_harness import stage_lock
with stage_lock(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_stage_waits_for_the_first_and_a_killed_one_frees_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(Path(__file__).parent), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=f"another container stage \\(pid {holder.pid}\\)"):
            with stage_lock(tmp_path, wait_s=1.0):
                pass
        assert time.monotonic() - started >= 1.0  # it waited first
    finally:
        holder.send_signal(signal.SIGKILL)  # a run killed mid-way (a machine restart)
        holder.wait(timeout=10)
    with stage_lock(tmp_path, wait_s=5.0):
        assert (tmp_path / "stage.lock").read_text().strip() == str(os.getpid())
