"""Service invocation through two Envoys vs direct vs a bare two-Envoy baseline, at a fixed request rate.

Run: .venv/bin/python bench/invoke_bench.py [--rate 1000] [--connections 16] [--duration 20]

Topology (all on 127.0.0.1): a control plane, sidecar A (Envoy + capability service, app id `caller`) and
sidecar B (Envoy + capability service) in front of app `target`, a trivial aiohttp server in its own process.
Paths, measured one after another in the same run, each for --duration seconds:
  direct     load generator -> target app
  mesh       -> A's Dapr HTTP listener /v1.0/invoke/target/method/hello -> A's Envoy -> B's inbound
             listener (B's Envoy) -> target app. Envoy routes this itself: the capability services are
             not on the path (their CPU during the run is reported to prove it)
  bare       -> static Envoy 1 -> static Envoy 2 -> target app (same two hops, static config, no xDS)
With --mtls the control plane runs its CA (MECHA_MTLS=1: the sidecars talk mutual TLS, as `mecha up` does by
default) and the bare pair is a bare mTLS pair (bench/invoke_filters_bench.py's certificates and TLS
contexts), so both sides pay the same handshakes and record encryption.
envoy_cpu_us_per_request: CPU (user+sys, /proc) of both Envoys of a path per request: the figure that holds
under load; mesh_over_bare = its ratio (goal <= 1.1).
The load generator is a separate process (a lean HTTP/1.1 client on uvloop, no cyclic GC while measuring):
open loop, requests scheduled at a fixed rate over N keep-alive connections; latency is measured from the
scheduled send time, so queueing is counted.
Goal: mesh - direct p50 < 0.5 ms, p99 < 1.5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mesh_rig import (
    PY,
    ControlPlane,
    Sidecar,
    http_status,
    http_text,
    percentiles,
    spawn,
    stop,
    wait_until,
)
from procstat import cpu_seconds, rss_mb

HERE = Path(__file__).resolve()


# ---- the target app and the load generator (run as child processes of this script) --------------------
def serve(port: int) -> None:
    from aiohttp import web

    async def hello(_r: web.Request) -> web.Response:
        return web.Response(body=b'{"hello":"world"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/healthz", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def loadgen(url: str, rate: int, connections: int, duration: float) -> dict[str, object]:
    """Open-loop HTTP/1.1 GETs at `rate` over `connections` keep-alive connections.

    A lean client (one pre-encoded request, asyncio streams, Content-Length bodies) rather than aiohttp's:
    on 2 cores the generator competes with the two Envoys and the app for CPU, and its own cost and pauses
    would be counted as latency on every path. A request waits for a free connection; that wait counts."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    total = int(rate * duration)
    latencies: list[float] = []
    errors = 0
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(host, port))

    async def one(scheduled: float | None) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head[9:12] != b"200":
                errors += 1
            elif scheduled is not None:
                latencies.append(time.perf_counter() - scheduled)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        idle.put_nowait((reader, writer))

    for _ in range(200):  # warm the connections and Envoy's upstream pools
        await one(None)
    # the generator's own pauses would count as latency on every path: no cyclic GC while measuring, and
    # finished requests are dropped at once
    in_flight: set[asyncio.Task[None]] = set()
    gc.collect()
    gc.disable()
    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.gather(*in_flight)
    elapsed = time.perf_counter() - start
    gc.enable()
    while not idle.empty():
        idle.get_nowait()[1].close()
    return {**percentiles(latencies), "errors": errors, "achieved_rps": round(len(latencies) / elapsed)}


def run_loadgen(url: str, args: argparse.Namespace) -> dict[str, object]:
    argv = [PY, str(HERE), "--loadgen", url, "--rate", str(args.rate), "--connections", str(args.connections),
            "--duration", str(args.duration)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# ---- the benchmark ----------------------------------------------------------------------------------------
def bench(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    from invoke_filters_bench import Pair, write_certs

    if args.mtls:
        os.environ["MECHA_MTLS"] = "1"  # the CA with --insecure-xds: secrets over ADS, as agents serve them
    caller, target = Sidecar.fresh("caller"), Sidecar.fresh("target")
    cp = ControlPlane(folder=folder)
    cp.start([*caller.docs(), *target.docs()])
    procs = [spawn([PY, str(HERE), "--serve", str(target.app_port)], folder / "target.log")]
    caps = {}
    envoys = []
    for car in (caller, target):
        envoys.append(spawn(car.envoy_argv(cp.xds_port, folder), folder / f"envoy-{car.service}.out"))
        caps[car.service] = spawn(car.capabilities_argv(cp.api), folder / f"capabilities-{car.service}.log")
    procs += envoys + list(caps.values())
    bare: Pair | None = None
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{target.app_port}/healthz") == 200, 20, "target")
        for car in (caller, target):
            wait_until(car.envoy_ready, 30, f"envoy {car.service}")
        mesh_url = f"{caller.dapr_http}/v1.0/invoke/target/method/hello"
        wait_until(lambda: http_status(mesh_url) == 200, 30, "invoke through the mesh")
        bare = Pair("bare", set(), target.app_port, folder, write_certs(folder) if args.mtls else None)
        result: dict[str, object] = {
            "rate": args.rate, "connections": args.connections, "duration_s": args.duration,
            "mtls": args.mtls, "load_average_before": os.getloadavg(),
        }  # fmt: skip
        result["direct"] = run_loadgen(f"http://127.0.0.1:{target.app_port}/hello", args)
        pids = {name: proc.pid for name, proc in caps.items()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        envoy_cpu = lambda: sum(cpu_seconds(p.pid) for p in envoys)  # noqa: E731
        mesh_cpu = envoy_cpu()
        t = time.perf_counter()
        result["mesh"] = run_loadgen(mesh_url, args)
        wall = time.perf_counter() - t
        mesh_cpu = envoy_cpu() - mesh_cpu
        result["capability_services_during_mesh_run"] = {
            name: {
                "cpu_percent": round((cpu_seconds(pid) - cpu_before[name]) / wall * 100, 2),
                "rss_mib": round(rss_mb(pid), 1),
            }
            for name, pid in pids.items()
        }
        bare_cpu = bare.cpu()
        result["bare_two_envoys"] = run_loadgen(bare.url, args)
        bare_cpu = bare.cpu() - bare_cpu
        if args.mtls:  # proof that the mesh hop was TLS: the target's inbound listener counted handshakes
            stats = http_text(f"{target.admin}/stats?filter=listener.*ssl.handshake$", 5)
            result["target_inbound_tls_handshakes"] = sum(
                int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if ":" in line
            )
        for path, cpu in (("mesh", mesh_cpu), ("bare_two_envoys", bare_cpu)):
            row, direct = result[path], result["direct"]
            assert isinstance(row, dict) and isinstance(direct, dict)
            row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3)
            row["added_p99_ms"] = round(row["p99_ms"] - direct["p99_ms"], 3)
            row["envoy_cpu_us_per_request"] = round(cpu / max(1, row["n"] + row["errors"]) * 1e6, 1)
        mesh_row, bare_row = result["mesh"], result["bare_two_envoys"]
        assert isinstance(mesh_row, dict) and isinstance(bare_row, dict)
        result["mesh_over_bare"] = {
            "envoy_cpu": round(
                mesh_row["envoy_cpu_us_per_request"] / bare_row["envoy_cpu_us_per_request"], 3
            ),
            "added_p50": round(mesh_row["added_p50_ms"] / bare_row["added_p50_ms"], 3),
            "added_p99": round(mesh_row["added_p99_ms"] / bare_row["added_p99_ms"], 3),
        }
        result["load_average_after"] = os.getloadavg()
        return result
    finally:
        if bare is not None:
            bare.stop()
        for proc in reversed(procs):
            stop(proc)
        cp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--mtls", action="store_true", help="mesh with its CA (mutual TLS) vs a bare mTLS pair"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.loadgen:
        from capabilities.eventloop import loop_factory  # uvloop when installed: a steadier generator

        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(loadgen(args.loadgen, args.rate, args.connections, args.duration))
        print(json.dumps(result))
        return
    folder = Path(tempfile.mkdtemp(prefix="mecha-invoke-"))
    try:
        print(json.dumps(bench(args, folder), indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
