"""`mecha up` on the demo (mTLS on, the default): seconds from the command to "Mecha is up", median of N runs,
with the moment each component reported ready and the load average (the machine may be shared).

    .venv/bin/python bench/up_bench.py --runs 5

Each run uses a fresh state folder and a free port block. The floor beside the median is the first Envoy's
SYNCED line: no Envoy can be SYNCED before the control plane, its agent and its first push, so "Mecha is up"
cannot come earlier (a lower bound read from the output, not each component measured alone).

A failed run's folder is kept and printed (mecha up's output in up.out, every component's log in
.mecha/logs/): a failure is read there, not guessed."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import tree_cpu_seconds

from xds.testing.up_ports import NoFreeOffset, free_offset


def one_run() -> tuple[float, dict[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix="mecha-up-bench-"))
    try:
        offset = free_offset()
    except NoFreeOffset as exc:
        raise SystemExit(str(exc)) from None
    up_at, ready, failure = watch_up(folder, offset)
    if up_at is None:  # keep what explains it
        raise SystemExit(f"{failure} (--port-offset {offset}); kept: {folder} (up.out, .mecha/logs/)")
    shutil.rmtree(folder, ignore_errors=True)
    return up_at, ready


def watch_up(folder: Path, offset: int) -> tuple[float | None, dict[str, float], str]:
    """`mecha up` in folder until "Mecha is up" (its second) or its failure, then Ctrl-C; each component's
    [ready] second; the failure line. Its whole output goes to folder/up.out."""
    ready: dict[str, float] = {}
    failure = "mecha up ended without 'Mecha is up'"
    with (folder / "up.out").open("w") as output:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(offset)],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                now = time.monotonic() - started
                output.write(line)
                if line.startswith("[ready] "):
                    ready[" ".join(line.split()[1:3])] = now
                if "Mecha is up" in line:
                    ready["cpu-s"] = tree_cpu_seconds(proc.pid)
                    return now, ready, ""
                if line.startswith("mecha up failed"):
                    failure = line.strip()
                    break
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                rest = proc.communicate(timeout=40)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                rest = proc.communicate()[0]
            output.write(rest or "")
    return None, ready, failure


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    totals, cp, first_envoy, cpu_s = [], [], [], []
    for i in range(args.runs):
        load = os.getloadavg()[0]
        total, ready = one_run()
        envoys = [t for k, t in ready.items() if k.startswith("envoy ")]
        totals.append(total)
        cp.append(ready.get("control plane", 0.0))
        first_envoy.append(min(envoys) if envoys else 0.0)
        cpu_s.append(ready.get("cpu-s", 0.0))
        print(f"run {i + 1}: up in {total:.2f} s (control plane ready {cp[-1]:.2f} s, first Envoy SYNCED "
              f"{first_envoy[-1]:.2f} s; {cpu_s[-1]:.1f} CPU-s by all processes; load average {load:.2f})",
              flush=True)  # fmt: skip
    print(
        f"median of {args.runs}: {statistics.median(totals):.2f} s to 'Mecha is up'; control plane ready "
        f"{statistics.median(cp):.2f} s; floor (first Envoy SYNCED) {statistics.median(first_envoy):.2f} s; "
        f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )
    work = statistics.median(cpu_s)
    print(
        f"CPU used by mecha up and everything it started, until 'Mecha is up': median {work:.1f} CPU-s, "
        f"so at least {work / (os.cpu_count() or 1):.2f} s on {os.cpu_count()} CPUs even if nothing waited"
    )


if __name__ == "__main__":
    main()
