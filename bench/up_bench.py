"""`mecha up` on the demo (mTLS on, the default): seconds from the command to "Mecha is up", median of N runs,
with the moment each component reported ready and the load average (the machine may be shared).

    .venv/bin/python bench/up_bench.py --runs 5

Each run uses a fresh state folder and a free port block. The floor beside the median is the first Envoy's
SYNCED line: no Envoy can be SYNCED before the control plane, its agent and its first push, so "Mecha is up"
cannot come earlier (a lower bound read from the output, not each component measured alone)."""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout
from xds.runner.procs import port_in_use


def free_offset() -> int:
    for _ in range(100):
        offset = random.randrange(1000, 14000)
        layout = default_layout("sidecar", offset)
        ports = [DEFAULT_API_PORT + offset, DEFAULT_XDS_PORT + offset, *layout.ports().values()]
        ports += [*layout.capability_ports().values(), *layout.gateway_ports().values()]
        if not any(port_in_use(p) for p in ports):
            return offset
    raise SystemExit("no free port block")


def one_run() -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(free_offset())],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        ready: dict[str, float] = {}
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                now = time.monotonic() - started
                if line.startswith("[ready] "):
                    ready[" ".join(line.split()[1:3])] = now
                if "Mecha is up" in line:
                    return now, ready
                if line.startswith("mecha up failed"):
                    raise SystemExit(line)
            raise SystemExit("mecha up ended without 'Mecha is up'")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    totals, cp, first_envoy = [], [], []
    for i in range(args.runs):
        load = os.getloadavg()[0]
        total, ready = one_run()
        envoys = [t for k, t in ready.items() if k.startswith("envoy ")]
        totals.append(total)
        cp.append(ready.get("control plane", 0.0))
        first_envoy.append(min(envoys) if envoys else 0.0)
        print(f"run {i + 1}: up in {total:.2f} s (control plane ready {cp[-1]:.2f} s, first Envoy SYNCED "
              f"{first_envoy[-1]:.2f} s; load average {load:.2f})", flush=True)  # fmt: skip
    print(
        f"median of {args.runs}: {statistics.median(totals):.2f} s to 'Mecha is up'; control plane ready "
        f"{statistics.median(cp):.2f} s; floor (first Envoy SYNCED) {statistics.median(first_envoy):.2f} s; "
        f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
