"""Sidecar start-up: Envoy + capability service spawned in parallel until both are ready. Goal: < 0.5 s.

Run: .venv/bin/python bench/sidecar_start_bench.py [--runs 10]

Two paths, interleaved in each run (their ratio is the agent's cost):
  direct  the old path: a control plane with --insecure-xds, Envoy dials it with a plaintext bootstrap
  agent   the default secure path: a second control plane with its CA (TLS xDS), the proxy's credential
          issued beforehand (not timed, as at deploy time); the capability service starts with its embedded
          agent (--agent-* flags, a child process of the service); as `mecha run` does, Envoy is spawned with
          it, on a bootstrap that reaches only the agent's sockets (ADS and SDS over Unix sockets; Envoy dials
          them every <= 50 ms until they open); `sockets` times the moment they exist

One control plane (started once, not timed) holds a ServiceEntry for the app and two in-memory components.
Each run spawns a fresh sidecar (new proxy id, new ports) and times, from the spawn of both processes:
  envoy        admin /ready answers LIVE and the Dapr HTTP listener pushed by the control plane is listed
  capabilities its own /v1.0/healthz/outbound answers 204 (components from the control plane loaded)
  sidecar      both of the above AND a request through Envoy's Dapr port
               (GET /v1.0/healthz/outbound) answers 204
The same run also times a bare Envoy (same bootstrap, no capability service) to the `envoy` condition.
Medians over the runs; one core each (Envoy --concurrency 1).

With each sidecar, the CPU seconds its processes used up to the moment it was ready (/proc, read then): the
capability service (`cpu_capabilities`), its agent child (`cpu_agent`), Envoy (`cpu_envoy`) and this bench
itself (`cpu_bench`, its polling), so what the 2 cores had to do is a figure, not an estimate.

--compiled runs the capability service (and its agent) from a byte-compiled copy of capabilities/ and xds/,
as `pip install .` leaves it. By default it runs from the work tree, and with PYTHONDONTWRITEBYTECODE=1 (set
on the development machines) every start compiles our ~80 modules from source again (~60-70 ms here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mesh_rig import (
    PY,
    ROOT,
    ControlPlane,
    Sidecar,
    component,
    http_status,
    median_ms,
    spawn,
    stop,
    wait_until,
)
from procstat import cpu_seconds, tree_processes

from xds.agent.bootstrap import through_agent
from xds.agent.launch import embedded_agent_argv, issue_for
from xds.statedir import write_private_file


def cpu_at_ready(capabilities: int, envoy: int, bench_start: float) -> dict[str, float]:
    """CPU seconds of the sidecar's processes now (the agent: the service's child running xds.agent)."""
    tree = tree_processes(capabilities)
    agent = sum(p.cpu_s for p in tree if "xds.agent" in p.argv)
    return {
        "cpu_capabilities": tree[0].cpu_s if tree else 0.0,
        "cpu_agent": agent,
        "cpu_envoy": cpu_seconds(envoy),
        "cpu_bench": cpu_seconds() - bench_start,
    }


def compiled_copy(folder: Path) -> Path:
    """A copy of capabilities/ and xds/ (the agent, started by the service) with their bytecode written next
    to them; returns the folder to run them from."""
    src = folder / "compiled-src"
    for package in ("capabilities", "xds"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([PY, "-m", "compileall", "-q", str(src / package)], check=True)
    return src


class SecureControlPlane(ControlPlane):
    """The default control plane: TLS xDS, its CA signs workload certificates, credentials required."""

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def root_cert(self) -> Path:
        return self.state / "ca" / "root-cert.pem"

    def start(self, docs: list[dict[str, Any]]) -> None:
        config = self.folder / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "mesh.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.proc = spawn(
            [PY, "-m", "xds.cli", "serve", "--port", str(self.api_port), "--xds-port", str(self.xds_port),
             "--config", str(config), "--watch-interval", "0.2", "--state-dir", str(self.state)],
            self.folder / "control-plane.log",
        )  # fmt: skip
        wait_until(lambda: http_status(f"{self.api}/readyz") == 200, 30, "secure control plane ready")
        wait_until(self.root_cert.is_file, 10, "mesh root written")


def agent_sidecar(cp: SecureControlPlane, folder: Path, cwd: Path | None = None) -> dict[str, float]:
    """The secure path: credential beforehand (untimed), then capability service + agent, sockets, Envoy."""
    car = Sidecar.fresh("app")
    credential = issue_for(cp.state, car.proxy.id, car.proxy.metadata())
    sockets = credential.parent
    direct_argv = car.envoy_argv(cp.xds_port, folder)
    plain = Path(direct_argv[direct_argv.index("-c") + 1])
    bootstrap = write_private_file(plain.with_name(f"{plain.stem}.agent.yaml"),
                                   through_agent(plain.read_text(), sockets))  # fmt: skip
    envoy_argv = [*direct_argv]
    envoy_argv[envoy_argv.index("-c") + 1] = str(bootstrap)
    agent = embedded_agent_argv(credential, f"127.0.0.1:{cp.xds_port}", cp.root_cert, "cluster.local")
    cap_argv = car.capabilities_argv(cp.api, *agent)
    env = {"MECHA_STATE_DIR": str(cp.state)}
    procs = []
    done: dict[str, float] = {}
    cap_health = f"http://127.0.0.1:{car.proxy.capabilities_http_port}/v1.0/healthz/outbound"
    bench_cpu = cpu_seconds()
    t0 = time.perf_counter()
    procs.append(spawn(cap_argv, folder / "capabilities-agent.log", env=env, cwd=cwd))
    procs.append(spawn(envoy_argv, folder / "envoy.out"))
    try:
        deadline = t0 + 30
        while time.perf_counter() < deadline:
            now = time.perf_counter
            if "sockets" not in done and (sockets / "xds.sock").exists() and (sockets / "sds.sock").exists():
                done["sockets"] = now() - t0
            if "envoy" not in done and car.envoy_ready():
                done["envoy"] = now() - t0
            if "capabilities" not in done and http_status(cap_health) == 204:
                done["capabilities"] = now() - t0
            if "envoy" in done and "capabilities" in done:
                if http_status(f"{car.dapr_http}/v1.0/healthz/outbound") == 204:
                    done["sidecar"] = now() - t0
                    done.update(cpu_at_ready(procs[0].pid, procs[1].pid, bench_cpu))
                    break
            time.sleep(0.003)
        else:
            raise TimeoutError(f"agent sidecar not ready in 30 s (got {done}); logs in {folder}")
    finally:
        for proc in procs:
            stop(proc)
    return done


def one_sidecar(
    cp: ControlPlane, folder: Path, with_capabilities: bool, cwd: Path | None = None
) -> dict[str, float]:
    car = Sidecar.fresh("app")
    envoy_argv = car.envoy_argv(cp.xds_port, folder)
    cap_argv = car.capabilities_argv(cp.api)
    procs = []
    bench_cpu = cpu_seconds()
    t0 = time.perf_counter()
    procs.append(spawn(envoy_argv, folder / "envoy.out"))
    if with_capabilities:
        procs.append(spawn(cap_argv, folder / "capabilities.log", cwd=cwd))
    done: dict[str, float] = {}
    cap_health = f"http://127.0.0.1:{car.proxy.capabilities_http_port}/v1.0/healthz/outbound"
    try:
        deadline = t0 + 30
        while time.perf_counter() < deadline:
            now = time.perf_counter
            if "envoy" not in done and car.envoy_ready():
                done["envoy"] = now() - t0
            if with_capabilities and "capabilities" not in done and http_status(cap_health) == 204:
                done["capabilities"] = now() - t0
            if not with_capabilities and "envoy" in done:
                break
            if len(done) == 2 and http_status(f"{car.dapr_http}/v1.0/healthz/outbound") == 204:
                done["sidecar"] = now() - t0
                done.update(cpu_at_ready(procs[1].pid, procs[0].pid, bench_cpu))
                break
            time.sleep(0.003)
        else:
            raise TimeoutError(f"sidecar not ready in 30 s (got {done}); logs in {folder}")
    finally:
        for proc in procs:
            stop(proc)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--compiled", action="store_true", help="run byte-compiled copies of capabilities/ and xds/"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mecha-start-"))
    cwd = compiled_copy(folder) if args.compiled else None
    cp = ControlPlane(folder=folder / "direct")
    secure = SecureControlPlane(folder=folder / "agent")
    app = Sidecar.fresh("app")
    docs = [*app.docs(), component("statestore", "state.in-memory"), component("pubsub", "pubsub.in-memory")]
    cp.start(docs)
    secure.start(docs)
    cpu_keys = ("cpu_capabilities", "cpu_agent", "cpu_envoy", "cpu_bench")
    direct_keys = ("envoy", "capabilities", "sidecar", *cpu_keys)
    agent_keys = ("sockets", "envoy", "capabilities", "sidecar", *cpu_keys)
    rows: dict[str, list[float]] = {
        k: [] for k in (*direct_keys, "bare_envoy", *(f"agent_{k}" for k in agent_keys))
    }
    try:
        for _ in range(args.runs):
            full = one_sidecar(cp, folder, with_capabilities=True, cwd=cwd)
            for key in direct_keys:
                rows[key].append(full[key])
            rows["bare_envoy"].append(one_sidecar(cp, folder, with_capabilities=False)["envoy"])
            through = agent_sidecar(secure, folder, cwd=cwd)
            for key in agent_keys:
                rows[f"agent_{key}"].append(through[key])
    finally:
        cp.stop()
        secure.stop()
    result: dict[str, Any] = {f"{k}_median_ms": median_ms(v) for k, v in rows.items()}
    result["agent_to_direct_sidecar_ratio"] = round(
        result["agent_sidecar_median_ms"] / result["sidecar_median_ms"], 2
    )
    result.update({f"{k}_all_ms": [round(x * 1000) for x in v] for k, v in rows.items()})
    result["runs"] = args.runs
    result["compiled"] = args.compiled
    result["goal_ms"] = 500
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
