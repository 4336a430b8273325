"""`mecha up` on the demo (mTLS on, the default): seconds from the command to "Mecha is up", median of N runs,
with the moment each component reported ready and the load average (the machine may be shared).

    .venv/bin/python bench/up_bench.py --runs 5
    .venv/bin/python bench/up_bench.py --runs 5 --per-process
    .venv/bin/python bench/up_bench.py --runs 5 --control-plane-only

Each run uses a fresh state folder and a free port block. The floor beside the median is the first Envoy's
SYNCED line: no Envoy can be SYNCED before the control plane, its agent and its first push, so "Mecha is up"
cannot come earlier (a lower bound read from the output, not each component measured alone).

--per-process: at "Mecha is up", the CPU seconds of every process `mecha up` started (read from /proc),
summed per role (control plane, supervisor, capability services, agents, Envoys, demo apps) with their count.

--control-plane-only: no `mecha up`: `mecha serve` alone, started as `mecha up` starts it (the same code:
the demo's config, the CA and signing key made beforehand, the same command line and environment), timed from
its start to /readyz 200, with the CPU seconds it used by then: the slowest single component's own start.

A failed run's folder is kept and printed (mecha up's output in up.out, every component's log in
.mecha/logs/): a failure is read there, not guessed."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from procstat import ProcCpu, tree_cpu_seconds, tree_processes

from xds.testing.up_ports import NoFreeOffset, free_offset

ROLES = ("control plane", "supervisor", "capability services", "agents", "Envoys", "demo apps", "other",
         "exited (reaped)")  # fmt: skip
T = TypeVar("T")
MODULE_ROLES = {"capabilities": "capability services", "xds.agent": "agents", "xds.demo": "demo apps"}


@dataclass
class Run:
    up_s: float
    ready: dict[str, float]  # component -> second of its [ready] line
    cpu_s: float  # mecha up and every process it started, until "Mecha is up"
    roles: dict[str, tuple[int, float]] = field(default_factory=dict)  # role -> (processes, CPU-s)


def role_of(proc: ProcCpu, root: int) -> str:
    """Which part of the mesh a process of `mecha up`'s tree is, from its command line."""
    if proc.pid == root:
        return "supervisor"
    argv = proc.argv
    if argv and Path(argv[0]).name == "envoy":  # the venv's wrapper execs the binary with the same argv
        return "Envoys"
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if module == "xds.cli" and "serve" in argv:
        return "control plane"
    return MODULE_ROLES.get(module, "other")


def cpu_by_role(root: int) -> dict[str, tuple[int, float]]:
    """Processes and CPU seconds per role, now; what exited children used is counted apart (their parent
    holds it once it reaped them: a restarted agent, a compile step)."""
    roles: dict[str, tuple[int, float]] = {}
    reaped = 0.0
    for proc in tree_processes(root):
        count, cpu = roles.get(role_of(proc, root), (0, 0.0))
        roles[role_of(proc, root)] = (count + 1, cpu + proc.cpu_s)
        reaped += proc.reaped_cpu_s
    if reaped:
        roles["exited (reaped)"] = (0, reaped)
    return roles


def one_run(per_process: bool) -> Run:
    folder = Path(tempfile.mkdtemp(prefix="mecha-up-bench-"))
    try:
        offset = free_offset()
    except NoFreeOffset as exc:
        raise SystemExit(str(exc)) from None
    run, failure = watch_up(folder, offset, per_process)
    if run is None:  # keep what explains it
        raise SystemExit(f"{failure} (--port-offset {offset}); kept: {folder} (up.out, .mecha/logs/)")
    shutil.rmtree(folder, ignore_errors=True)
    return run


def watch_up(folder: Path, offset: int, per_process: bool) -> tuple[Run | None, str]:
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
                    roles = cpu_by_role(proc.pid) if per_process else {}
                    return Run(now, ready, tree_cpu_seconds(proc.pid), roles), ""
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
    return None, failure


def up_runs(runs: int, per_process: bool) -> None:
    totals, cp, first_envoy, cpu_s = [], [], [], []
    per_role: dict[str, list[tuple[int, float]]] = {}
    for i in range(runs):
        load = os.getloadavg()[0]
        run = one_run(per_process)
        envoys = [t for k, t in run.ready.items() if k.startswith("envoy ")]
        totals.append(run.up_s)
        cp.append(run.ready.get("control plane", 0.0))
        first_envoy.append(min(envoys) if envoys else 0.0)
        cpu_s.append(run.cpu_s)
        print(f"run {i + 1}: up in {run.up_s:.2f} s (control plane ready {cp[-1]:.2f} s, first Envoy SYNCED "
              f"{first_envoy[-1]:.2f} s; {cpu_s[-1]:.1f} CPU-s by all processes; load average {load:.2f})",
              flush=True)  # fmt: skip
        if per_process:
            print("  " + "; ".join(f"{role} {cpu:.2f} CPU-s ({n})" for role, (n, cpu) in ordered(run.roles)))
            for role, value in run.roles.items():
                per_role.setdefault(role, []).append(value)
    print(
        f"median of {runs}: {statistics.median(totals):.2f} s to 'Mecha is up'; control plane ready "
        f"{statistics.median(cp):.2f} s; floor (first Envoy SYNCED) {statistics.median(first_envoy):.2f} s; "
        f"load average now {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
    )
    work = statistics.median(cpu_s)
    print(
        f"CPU used by mecha up and everything it started, until 'Mecha is up': median {work:.1f} CPU-s, "
        f"so at least {work / (os.cpu_count() or 1):.2f} s on {os.cpu_count()} CPUs even if nothing waited"
    )
    if per_process:
        print(f"per role at 'Mecha is up', median of {runs} (processes; each):")
        for role, values in ordered(per_role):
            total = statistics.median(cpu for _, cpu in values)
            count = statistics.median(n for n, _ in values)
            each = f"; {total / count:.2f} each" if count > 1 else ""
            print(f"  {role:<20} {total:5.2f} CPU-s ({count:g}{each})")


def ordered(by_role: dict[str, T]) -> list[tuple[str, T]]:
    return sorted(by_role.items(), key=lambda item: ROLES.index(item[0]))


async def control_plane_run() -> tuple[float, float]:
    """`mecha serve` as `mecha up` starts it (xds/runner/stack.py) in a fresh folder: seconds from its start
    to /readyz 200 and the CPU seconds it used by then."""
    import aiohttp

    from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
    from xds.demo.config import default_layout, demo_config, demo_secret_env
    from xds.runner.demofile import write_demo_config
    from xds.runner.stack import Stack, StackOptions
    from xds.statedir import ensure_private_dir

    for key, value in demo_secret_env().items():  # as `mecha up` does for the demo's secret store
        os.environ.setdefault(key, value)
    folder = Path(tempfile.mkdtemp(prefix="mecha-cp-bench-"))
    offset = free_offset()
    options = StackOptions(layout=default_layout("sidecar", offset), state_dir=folder / ".mecha",
                           api_port=DEFAULT_API_PORT + offset, xds_port=DEFAULT_XDS_PORT + offset,
                           with_gateway=True, deploy_gateways=True, port_offset=offset)  # fmt: skip
    stack = Stack(options)
    ensure_private_dir(options.state_dir)
    ensure_private_dir(stack.logs)
    # what `mecha up` makes before the control plane starts (Stack.start): the CA, the signing key, the config
    assert stack._identity_made_early(True), "the CA and signing key were not made"
    write_demo_config(stack.config_dir, demo_config(options.layout, options.knobs))
    try:
        started = time.monotonic()
        child = await stack._launch_control_plane()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                try:
                    async with session.get(f"{stack.api}/readyz") as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                if child.proc is None or child.proc.returncode is not None:
                    raise SystemExit(f"mecha serve ended before ready; kept: {folder} (.mecha/logs/)")
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        assert child.proc is not None
        cpu = tree_cpu_seconds(child.proc.pid)
    finally:
        await stack.stop()
    shutil.rmtree(folder, ignore_errors=True)
    return elapsed, cpu


def control_plane_runs(runs: int) -> None:
    times, cpus = [], []
    for i in range(runs):
        load = os.getloadavg()[0]
        elapsed, cpu = asyncio.run(control_plane_run())
        times.append(elapsed)
        cpus.append(cpu)
        print(f"run {i + 1}: mecha serve to /readyz 200 in {elapsed:.2f} s, {cpu:.2f} CPU-s (load average "
              f"{load:.2f})", flush=True)  # fmt: skip
    print(
        f"median of {runs}: {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}), "
        f"{statistics.median(cpus):.2f} CPU-s; load average now {os.getloadavg()[0]:.2f} "
        f"({os.cpu_count()} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-process", action="store_true",
                        help="also each role's CPU seconds at 'Mecha is up'")  # fmt: skip
    parser.add_argument("--control-plane-only", action="store_true",
                        help="only `mecha serve` as mecha up starts it, to /readyz")  # fmt: skip
    args = parser.parse_args()
    if args.control_plane_only:
        control_plane_runs(args.runs)
    else:
        up_runs(args.runs, args.per_process)


if __name__ == "__main__":
    main()
