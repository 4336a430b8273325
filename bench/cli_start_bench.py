"""CLI start-up: each client command's wall time beside the interpreter's own (`python -c pass`), same run.

Run: .venv/bin/python bench/cli_start_bench.py [--runs 5] [--server URL]

Goal (issue #16): every command under 0.3 s and within 0.2 s of `python -c pass`. Without --server the
client commands talk to a port nobody listens on (they fail at once after their imports: start-up is what
is timed); with --server (e.g. a running `mecha up`'s API) they do their whole job. Medians over the runs.
Run it on a quiet machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ONE_ROUTE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-start, namespace: default}
spec:
  hosts: [bench-start.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: bench-start.default.svc.cluster.local}
"""


def closed_port_url() -> str:
    with socket.socket() as s:  # bound then released: nobody listens there during the run
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def wall_s(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", default=None, help="a running control plane (default: none listening)")
    args = parser.parse_args()
    server = args.server or closed_port_url()
    with tempfile.TemporaryDirectory() as tmp:
        route = Path(tmp) / "route.yaml"
        route.write_text(ONE_ROUTE)
        mecha = [PY, "-m", "xds.cli"]
        commands = {
            "python -c pass": [PY, "-c", "pass"],
            "mecha --help": [*mecha, "--help"],
            "mecha version": [*mecha, "version", "--server", server],
            "mecha proxy-status": [*mecha, "proxy-status", "--server", server],
            "mecha diff": [*mecha, "diff", "-f", str(route), "--server", server],
            "mecha apply --dry-run": [*mecha, "apply", "--dry-run", "-f", str(route), "--server", server],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a busy moment hits every command alike
            for name, argv in commands.items():
                times[name].append(wall_s(argv))
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<24} {'median':>8} {'over python':>12}   (runs: {args.runs}, server: {server})")
    worst = 0.0
    for name, samples in times.items():
        median = statistics.median(samples)
        over = median - floor
        if name != "python -c pass":
            worst = max(worst, over)
        print(f"{name:<24} {median * 1000:>6.0f} ms {over * 1000:>+9.0f} ms")
    print(f"worst over the interpreter: {worst * 1000:.0f} ms (goal: < 200 ms, each command < 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
