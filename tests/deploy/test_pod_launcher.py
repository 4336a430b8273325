"""xds/runner/pod.py, the launcher of one compose replica (capability service, Envoy, app in one container):
SIGTERM stops the capability service first (it reports DRAINING) and the others only after the drain time;
a process that dies ends the container with its code (compose restarts it)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

# each role writes "<name> start <time> <pid>" then "<name> term ..." when it gets SIGTERM
ROLE = """
import os, signal, sys, time
name, log = sys.argv[1], sys.argv[2]
def say(what):
    with open(log, "a") as f:
        f.write(f"{name} {what} {time.monotonic():.3f} {os.getpid()}\\n")
signal.signal(signal.SIGTERM, lambda *_: (say("term"), sys.exit(0)))
say("start")
if len(sys.argv) > 3:  # dies with this code once all three run (a role not started yet has no handler)
    while sum(" start " in line for line in open(log)) < 3:
        time.sleep(0.05)
    sys.exit(int(sys.argv[3]))
while True:
    time.sleep(0.05)
"""

# xds.runner.pod with an audit hook logging "<pid> <signal> <time>" as the launcher sends a signal (os.kill)
LAUNCHER = """
import runpy, sys, time
kills = open(sys.argv.pop(1), "a", buffering=1)
def hook(event, args):
    if event == "os.kill":
        kills.write(f"{args[0]} {args[1]} {time.monotonic():.6f}\\n")
sys.addaudithook(hook)
runpy.run_module("xds.runner.pod", run_name="__main__", alter_sys=True)
"""


def _launcher(tmp_path: Path, exit_code: str = "") -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "roles.log"
    script = tmp_path / "role.py"
    script.write_text(ROLE)
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)

    def role(name: str, *extra: str) -> str:
        return shlex.join([sys.executable, str(script), name, str(log), *extra])

    argv = [sys.executable, str(launcher), str(tmp_path / "kills.log"),
            "--agent-dir", str(tmp_path / "agent"), "--admin", "127.0.0.1:1",
            "--drain-seconds", "1", "--keep-user",
            "--capabilities", role("capabilities"), "--envoy", role("envoy"),
            "--app", role("app", *([exit_code] if exit_code else []))]  # fmt: skip
    return subprocess.Popen(argv), log


def _events(log: Path) -> list[tuple[str, str, float]]:
    return [
        (n, what, float(at)) for n, what, at, _ in (line.split() for line in log.read_text().splitlines())
    ]


def _terms_sent(tmp_path: Path, log: Path) -> dict[str, float]:
    """Role -> when the launcher sent it SIGTERM (its own clock, CLOCK_MONOTONIC as the roles')."""
    names = {int(pid): n for n, what, _, pid in (line.split() for line in log.read_text().splitlines())}
    kills = [line.split() for line in (tmp_path / "kills.log").read_text().splitlines()]
    return {names[int(pid)]: float(at) for pid, sig, at in kills if int(sig) == signal.SIGTERM}


def _until_started(log: Path, names: set[str]) -> None:
    deadline = time.monotonic() + 20
    while not (log.exists() and {n for n, what, _ in _events(log) if what == "start"} >= names):
        assert time.monotonic() < deadline, "the roles did not start"
        time.sleep(0.05)


def test_sigterm_drains_the_capability_service_first(tmp_path: Path) -> None:
    proc, log = _launcher(tmp_path)
    _until_started(log, {"capabilities", "envoy", "app"})
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    terms = {n: at for n, what, at in _events(log) if what == "term"}
    assert set(terms) == {"capabilities", "envoy", "app"}, terms
    assert terms["capabilities"] < terms["envoy"] and terms["capabilities"] < terms["app"]
    # Envoy and the app serve through the drain time: measured when the launcher sends each SIGTERM (the time
    # a role handles it adds that process's own wake-up delay: under load 0.995 s apart for a 1 s drain)
    sent = _terms_sent(tmp_path, log)
    assert sent["envoy"] >= sent["capabilities"] + 1.0
    assert sent["app"] >= sent["capabilities"] + 1.0
    assert (tmp_path / "agent").stat().st_mode & 0o777 == 0o750


def test_a_process_that_dies_ends_the_replica_with_its_code(tmp_path: Path) -> None:
    proc, log = _launcher(tmp_path, exit_code="3")
    assert proc.wait(timeout=20) == 3
    terms = {n for n, what, _ in _events(log) if what == "term"}
    assert terms == {"capabilities", "envoy"}  # the others are stopped, not left behind
