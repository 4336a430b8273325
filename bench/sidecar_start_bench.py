"""Sidecar start-up: Envoy + capability service spawned in parallel until both are ready. Goal: < 0.5 s.

Run: .venv/bin/python bench/sidecar_start_bench.py [--runs 10]

One control plane (started once, not timed) holds a ServiceEntry for the app and two in-memory components.
Each run spawns a fresh sidecar (new proxy id, new ports) and times, from the spawn of both processes:
  envoy        admin /ready answers LIVE and the Dapr HTTP listener pushed by the control plane is listed
  capabilities its own /v1.0/healthz/outbound answers 204 (components from the control plane loaded)
  sidecar      both of the above AND a request through Envoy's Dapr port
               (GET /v1.0/healthz/outbound) answers 204
The same run also times a bare Envoy (same bootstrap, no capability service) to the `envoy` condition.
Medians over the runs; one core each (Envoy --concurrency 1).

--compiled runs the capability service from a byte-compiled copy of capabilities/ (python -m compileall),
as `pip install .` leaves it. By default it runs from the work tree, and with PYTHONDONTWRITEBYTECODE=1 (set
on the development machines) every start compiles our ~80 modules from source again (~60-70 ms here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mesh_rig import PY, ROOT, ControlPlane, Sidecar, component, http_status, median_ms, spawn, stop


def compiled_copy(folder: Path) -> Path:
    """A copy of capabilities/ with its bytecode written next to it; returns the folder to run it from."""
    src = folder / "compiled-src"
    shutil.copytree(ROOT / "capabilities", src / "capabilities", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([PY, "-m", "compileall", "-q", str(src / "capabilities")], check=True)
    return src


def one_sidecar(
    cp: ControlPlane, folder: Path, with_capabilities: bool, cwd: Path | None = None
) -> dict[str, float]:
    car = Sidecar.fresh("app")
    envoy_argv = car.envoy_argv(cp.xds_port, folder)
    cap_argv = car.capabilities_argv(cp.api)
    procs = []
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
    parser.add_argument("--compiled", action="store_true", help="run a byte-compiled copy of capabilities/")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mecha-start-"))
    cwd = compiled_copy(folder) if args.compiled else None
    cp = ControlPlane(folder=folder)
    app = Sidecar.fresh("app")
    cp.start(
        [*app.docs(), component("statestore", "state.in-memory"), component("pubsub", "pubsub.in-memory")]
    )
    rows: dict[str, list[float]] = {"envoy": [], "capabilities": [], "sidecar": [], "bare_envoy": []}
    try:
        for _ in range(args.runs):
            full = one_sidecar(cp, folder, with_capabilities=True, cwd=cwd)
            for key in ("envoy", "capabilities", "sidecar"):
                rows[key].append(full[key])
            rows["bare_envoy"].append(one_sidecar(cp, folder, with_capabilities=False)["envoy"])
    finally:
        cp.stop()
    result = {f"{k}_median_ms": median_ms(v) for k, v in rows.items()}
    result.update({f"{k}_all_ms": [round(x * 1000) for x in v] for k, v in rows.items()})
    result["runs"] = args.runs
    result["compiled"] = args.compiled
    result["goal_ms"] = 500
    print(json.dumps(result, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
