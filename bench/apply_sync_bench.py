"""`mecha apply` of a one-route change -> every proxy SYNCED at the new version, on the demo (issue #16).

Run: .venv/bin/python bench/apply_sync_bench.py [--runs 20] [--poll-ms 5]

Starts `mecha up` (the demo with its defaults: mTLS on, an agent per proxy) in a temporary folder on a free
--port-offset. Each run applies one VirtualService through the CLI (`python -m xds.cli apply -f`, from that
folder: it finds the mesh by .mecha/up.json) whose one route's timeout differs from the run before, and times
from the CLI's start to the first proxy-status answer (GET /api/v1/proxies, polled every --poll-ms from this
process while the CLI runs) that shows every proxy SYNCED at a config version after the one before the
change. The CLI's own exit is timed too, and the same change POSTed by this process to /api/v1/apply (no
CLI: the control plane's and the Envoys' share). Floors, interleaved in the same run: `python -c pass` and
the same CLI doing nothing but `--help`. Goal: under 0.5 s. The load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xds.testing.up_ports import free_offset

PY = sys.executable
MECHA = [PY, "-m", "xds.cli"]
GOAL_S = 0.5
ROUTE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench-ratings, namespace: default}}
spec:
  hosts: [ratings]
  http:
  - name: bench
    timeout: {timeout}ms
    route: [{{destination: {{host: ratings}}}}]
"""


def start_up(folder: Path, offset: int, within_s: float = 180) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*MECHA, "up", "--port-offset", str(offset)], cwd=folder, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline, lines = time.monotonic() + within_s, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Logs: "):  # the summary's last line
            return proc
    proc.kill()
    raise SystemExit("mecha up did not come up:\n" + "".join(lines))


class Api:
    def __init__(self, state_dir: Path) -> None:
        self.url = json.loads((state_dir / "up.json").read_text())["api"] + "/api/v1"
        self.headers = {"Authorization": "Bearer " + (state_dir / "api-token").read_text().strip()}

    def proxies(self) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url + "/proxies", headers=self.headers)
        with urllib.request.urlopen(request, timeout=5) as resp:
            return list(json.loads(resp.read())["proxies"])

    def apply(self, text: str) -> None:
        headers = {**self.headers, "Content-Type": "application/yaml"}
        request = urllib.request.Request(self.url + "/apply", data=text.encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()


def version(rows: list[dict[str, Any]]) -> int:
    return max(int(r.get("config_version") or 0) for r in rows)


def all_synced_after(rows: list[dict[str, Any]], before: int, count: int) -> bool:
    return len(rows) == count and all(
        r.get("state") == "SYNCED" and int(r.get("config_version") or 0) > before for r in rows
    )


Done = Callable[[], bool]  # the applying side has finished (raises when it failed)


def by_cli(folder: Path, route: Path) -> Done:
    cli = subprocess.Popen(
        [*MECHA, "apply", "-f", str(route)], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def done() -> bool:
        if cli.poll() is None:
            return False
        out = cli.communicate()[0].decode()
        if cli.returncode != 0:
            raise SystemExit(f"mecha apply failed: {out}")
        return True

    return done


def by_api(api: Api, route: Path) -> Done:
    failed: list[BaseException] = []

    def post() -> None:
        try:
            api.apply(route.read_text())
        except Exception as exc:  # reported by done()
            failed.append(exc)

    thread = threading.Thread(target=post)
    thread.start()

    def done() -> bool:
        if thread.is_alive():
            return False
        if failed:
            raise SystemExit(f"POST /api/v1/apply failed: {failed[0]}")
        return True

    return done


def apply_once(api: Api, start: Callable[[], Done], poll_s: float, count: int) -> tuple[float, float]:
    """(seconds to every proxy SYNCED at the new version, seconds to the applier's end), from its start."""
    before = version(api.proxies())
    started = time.perf_counter()
    done = start()
    synced = finished = None
    deadline = started + 30
    while synced is None or finished is None:
        if finished is None and done():
            finished = time.perf_counter() - started
        if synced is None and all_synced_after(api.proxies(), before, count):
            synced = time.perf_counter() - started  # the answer that showed it has arrived by now
        if time.perf_counter() > deadline:
            raise SystemExit(f"not SYNCED within 30 s: {api.proxies()}")
        time.sleep(poll_s)
    return synced, finished


def wall_s(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest rank


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="proxy-status poll interval")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        offset = free_offset()
        up = start_up(folder, offset)
        try:
            api = Api(folder / ".mecha")
            count = len(api.proxies())
            route = folder / "route.yaml"
            route.write_text(ROUTE.format(timeout=900))
            poll_s = args.poll_ms / 1000
            apply_once(
                api, lambda: by_cli(folder, route), poll_s, count
            )  # creates it: not a one-route change
            times: dict[str, list[float]] = {"apply -> all SYNCED": [], "apply CLI exit": []}
            times |= {"API POST -> all SYNCED": [], "python -c pass": [], "mecha --help": []}
            for i in range(args.runs):  # interleaved: a busy moment hits the floors alike
                route.write_text(ROUTE.format(timeout=1000 + 2 * i))
                synced, exited = apply_once(api, lambda: by_cli(folder, route), poll_s, count)
                times["apply -> all SYNCED"].append(synced)
                times["apply CLI exit"].append(exited)
                route.write_text(ROUTE.format(timeout=1001 + 2 * i))
                times["API POST -> all SYNCED"].append(
                    apply_once(api, lambda: by_api(api, route), poll_s, count)[0]
                )
                times["python -c pass"].append(wall_s([PY, "-c", "pass"]))
                times["mecha --help"].append(wall_s([*MECHA, "--help"]))
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
    load_end = os.getloadavg()
    print(f"mecha up demo (mTLS on), {count} proxies, --port-offset {offset}; {args.runs} runs, "
          f"poll every {args.poll_ms:g} ms")  # fmt: skip
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (1 min)")
    print(f"{'what':<22} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for name, samples in times.items():
        row = [statistics.median(samples), p90(samples), min(samples), max(samples)]
        print(f"{name:<22} " + " ".join(f"{v * 1000:>5.0f} ms" for v in row))
    median = statistics.median(times["apply -> all SYNCED"])
    verdict = "met" if median < GOAL_S else "not met"
    print(f"goal: apply -> all SYNCED under {GOAL_S * 1000:.0f} ms: median {median * 1000:.0f} ms, {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
