"""xDS push benchmark: N connected proxies (real Envoys + fake proxies in a worker process), a 1,000-service
mesh translated by xds.pipeline (bench/meshgen.py), ONE route changed (a VirtualService weight: one
RouteConfiguration per proxy), change -> ACK per proxy measured at the server, p50/p99.

Two debounce modes in the same run: ours (leading edge: an isolated change is pushed at once) and the
baseline (100 ms trailing debounce, as istiod's PILOT_DEBOUNCE_AFTER). The translation itself is timed once
and reported apart (snapshots for both configs are built before the timed runs).

    .venv/bin/python bench/xds_push_bench.py [--proxies 100] [--envoys 3] [--services 1000] [--runs 5]
                                             [--delta] [--synthetic]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from xds import types  # noqa: E402
from xds.cache import Snapshot, SnapshotCache  # noqa: E402
from xds.proxy import AppBinding, ProxyIdentity  # noqa: E402
from xds.server import Debouncer, SyncState, XdsServer  # noqa: E402
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port  # noqa: E402


def identity(i: int, real: bool) -> ProxyIdentity:
    """Fake proxies use fixed ports (nothing binds them); real Envoys get free ports."""
    ports = (
        [free_port() for _ in range(5)] if real else [20000 + i, 30000 + i, 40000 + i, 10000 + i, 60000 + i]
    )
    return ProxyIdentity(
        id=f"{'envoy' if real else 'fake'}{i:03d}",
        outbound_port=ports[0],
        dapr_http_port=ports[1],
        dapr_grpc_port=ports[2],
        labels=(("app", f"svc{i:05d}"), ("version", "v1")),
        apps=(AppBinding(name=f"svc{i:05d}", app_port=ports[3], inbound_port=ports[4]),),
    )


def build_snapshots(n_services: int, fleet: list[ProxyIdentity]) -> tuple[dict, dict, float, float]:
    """Snapshots for the mesh and for the mesh with ONE VirtualService weight changed."""
    from meshgen import generate_mesh

    from xds.pipeline import SnapshotBuilder, compile_documents, load_text

    text = generate_mesh(n_services)
    changed = text.replace("weight: 90}", "weight: 50}", 1).replace("weight: 10}", "weight: 50}", 1)
    builder = SnapshotBuilder()
    configs = []
    for t in (text, changed):
        docs, _ = load_text(t, "mesh.yaml")
        result = compile_documents(docs)
        assert result.config is not None, [str(d) for d in result.diagnostics[:3]]
        configs.append(result.config)
    started = time.perf_counter()
    a = builder.build(configs[0], fleet)
    first_build = time.perf_counter() - started
    started = time.perf_counter()
    b = builder.build(configs[1], fleet)
    rebuild = time.perf_counter() - started
    return a, b, first_build, rebuild


def synthetic_snapshots(n_services: int, fleet: list[ProxyIdentity]) -> tuple[dict, dict, float, float]:
    """xds.testing.resources mesh: n EDS clusters + CLAs shared by every proxy, one small RouteConfiguration
    (a route per service), one listener per proxy. The edit re-targets the "/" route."""
    from xds.testing.resources import http_listener, mesh_resources, route_config

    started = time.perf_counter()
    shared = [r for r in mesh_resources(n_services) if r.type_url not in (types.LISTENER, types.ROUTE)]
    routes = [(f"/svc{i}/", f"svc{i}") for i in range(n_services)]
    route_a = route_config("outbound", [*routes, ("/", "svc0")])
    route_b = route_config("outbound", [*routes, ("/", "svc1")])
    out: tuple[dict, dict] = ({}, {})
    for p in fleet:
        listener = http_listener("outbound", p.outbound_port or 15001, "outbound")
        for snaps, route in zip(out, (route_a, route_b), strict=True):
            snaps[p.id] = Snapshot.build([*shared, listener, route])
    return out[0], out[1], time.perf_counter() - started, 0.0


# ---------------------------------------------------------------- fake proxy worker (separate process)


async def worker(port: int, ids: list[str], delta: bool) -> None:
    from xds.testing.fake_proxy import FakeProxy

    proxies = [FakeProxy(f"127.0.0.1:{port}", pid, delta=delta) for pid in ids]
    for p in proxies:
        await p.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for p in proxies:
        await p.stop()


async def start_worker(port: int, ids: list[str], delta: bool) -> asyncio.subprocess.Process:
    args = [sys.executable, __file__, "--worker", "--port", str(port), "--ids", ",".join(ids)]
    if delta:
        args.append("--delta")
    return await asyncio.create_subprocess_exec(*args)


# ---------------------------------------------------------------- measurement


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_synced(server: XdsServer, count: int, timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server.status()
        if len(status) == count and all(s.state is SyncState.SYNCED for s in status):
            return
        await asyncio.sleep(0.1)
    states: dict[str, int] = {}
    for s in server.status():
        states[s.state] = states.get(s.state, 0) + 1
    raise TimeoutError(f"not all {count} proxies SYNCED after {timeout}s: {states}")


async def run(args: argparse.Namespace) -> None:
    n_fake = args.proxies - args.envoys
    fleet = [identity(i, True) for i in range(args.envoys)] + [identity(i, False) for i in range(n_fake)]
    t = time.perf_counter()
    build = synthetic_snapshots if args.synthetic else build_snapshots
    snaps_a, snaps_b, first_build, rebuild = build(args.services, fleet)
    print(
        f"translated {args.services} services for {len(fleet)} proxies: first {first_build:.2f} s, "
        f"one-route rebuild {rebuild:.2f} s (not timed below); setup {time.perf_counter() - t:.1f} s"
    )
    sample = snaps_a[fleet[0].id]
    sizes = {
        types.short_name(k): (len(v), sum(len(r.body) for r in v.values()))
        for k, v in sample.resources.items()
        if v
    }
    print("resources per proxy (count, bytes):", sizes)
    changed_types = [
        types.short_name(k) for k in sample.versions if sample.version(k) != snaps_b[fleet[0].id].version(k)
    ]
    print("types changed by the edit:", changed_types)

    acks: dict[tuple[str, str], float] = {}

    def on_ack(proxy_id: str, type_url: str, version: str) -> None:
        if type_url == types.ROUTE:
            acks.setdefault((proxy_id, version), time.monotonic())

    cache = SnapshotCache()
    server = XdsServer(cache, ack_listener=on_ack, max_concurrent_pushes=args.max_pushes)
    port = await server.start("127.0.0.1:0")
    for p in fleet:
        cache.set_snapshot(p.id, snaps_a[p.id])
    workdir = Path(tempfile.mkdtemp(prefix="xds-push-bench-"))
    envoys = []
    proc = None
    try:
        for p in fleet[: args.envoys]:
            yaml_text, _ = bootstrap_for(
                p.id, port, {"mode": "sidecar"}, delta=args.delta, initial_fetch_timeout_s=5
            )
            e = EnvoyProcess(yaml_text, workdir, name=p.id, log_level="warning")
            await e.start(wait_ready=False)
            envoys.append(e)
        proc = await start_worker(port, [p.id for p in fleet[args.envoys :]], args.delta)
        t = time.perf_counter()
        await wait_synced(server, len(fleet), timeout=300)
        print(
            f"{len(fleet)} proxies ({args.envoys} Envoy, {n_fake} fake, "
            f"{'delta' if args.delta else 'SotW'} ADS) SYNCED in {time.perf_counter() - t:.1f} s"
        )

        results: dict[str, list[float]] = {"leading edge (ours)": [], "100 ms trailing (baseline)": []}
        current = snaps_a
        for run_no in range(args.runs * 2):
            mode = "leading edge (ours)" if run_no % 2 == 0 else "100 ms trailing (baseline)"
            target = snaps_b if current is snaps_a else snaps_a

            async def fire(_: list[int], target: dict[str, Snapshot] = target) -> None:
                for p in fleet:
                    cache.set_snapshot(p.id, target[p.id])

            debouncer: Debouncer[int] = Debouncer(fire, after=0.1, leading_edge=mode.startswith("leading"))
            acks.clear()
            t0 = time.monotonic()
            debouncer.trigger(run_no)
            want = {(p.id, target[p.id].version(types.ROUTE)) for p in fleet}
            deadline = t0 + 30
            while not want <= acks.keys() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            missing = want - acks.keys()
            assert not missing, f"{len(missing)} proxies did not ACK within 30 s"
            results[mode].extend(acks[k] - t0 for k in want)
            await debouncer.close()
            current = target
            await asyncio.sleep(0.3)  # keep runs isolated (the leading edge needs a quiet period)
        await wait_synced(server, len(fleet), timeout=30)

        print(
            "\nchange -> ACK of the changed RouteConfiguration, per proxy "
            f"({args.runs} runs x {len(fleet)} proxies)"
        )
        print(f"{'debounce':<30}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
        for mode, values in results.items():
            row = [pct(values, 0.5), pct(values, 0.9), pct(values, 0.99), max(values)]
            print(f"{mode:<30}" + "".join(f"{v * 1000:8.1f}ms" for v in row))
        ours = pct(results["leading edge (ours)"], 0.99) * 1000
        print(
            f"\ngoal p99 < 100 ms: {'met' if ours < 100 else 'NOT met'} ({ours:.1f} ms); "
            f"mean {statistics.mean(results['leading edge (ours)']) * 1000:.1f} ms"
        )
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for e in envoys:
            await e.stop()
        await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--envoys", type=int, default=3)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delta", action="store_true", help="delta ADS (default SotW)")
    parser.add_argument(
        "--synthetic", action="store_true", help="xds.testing.resources mesh instead of the xds.pipeline one"
    )
    parser.add_argument("--max-pushes", type=int, default=100)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ids", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.port, [i for i in args.ids.split(",") if i], args.delta))
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
