"""xDS push benchmark: one route change -> ACK at N connected proxies, including the control plane's rebuild.

The mesh is the 1,000-service generated mesh (bench/meshgen.py) compiled by xds.pipeline; proxies are sidecars
on one host (every proxy has its own listener ports). A few are real Envoys, the rest protocol-level fake
proxies (xds.testing.fake_proxy) in 2 worker processes. Both configs (before/after a VirtualService weight
edit) are compiled before the timed runs: t0 is "config change accepted". Each timed run then does what the
control plane does: debounce -> SnapshotBuilder.build (memoized, incremental) -> cache.set_snapshot for every
proxy -> pushes -> ACKs, and the time of each proxy's ACK of the changed RouteConfigurations is taken at the
server. Two debounce modes alternate in the same run: ours (leading edge: an isolated change fires at once)
and the baseline (100 ms trailing debounce, istiod's PILOT_DEBOUNCE_AFTER).

    .venv/bin/python bench/xds_push_bench.py [--proxies 100] [--envoys 3] [--services 1000] [--runs 5]
                                             [--delta] [--synthetic] [--workers 2] [--profile FILE]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from procstat import cpu_seconds, rss_mb  # noqa: E402
from xds_fleet_security import FleetSecurity  # noqa: E402
from xds_replicas import FleetState, Meters, apply, poll_fleet, wait_fleet_synced  # noqa: E402

from xds import types  # noqa: E402
from xds.cache import Snapshot, SnapshotCache  # noqa: E402
from xds.controlplane import consistency  # noqa: E402
from xds.proxy import AppBinding, ProxyIdentity  # noqa: E402
from xds.server import Debouncer, SyncState, XdsServer  # noqa: E402
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port  # noqa: E402
from xds.testing.replicas import fresh_schema, running_replicas, shared_keys  # noqa: E402

Rebuild = Callable[[Any, float], dict[str, Snapshot]]  # (config, changed_at) -> snapshots of the fleet


def identity(i: int, real: bool) -> ProxyIdentity:
    """Sidecars on one host: every proxy its own ports. Fake proxies use fixed ports (nothing binds them);
    real Envoys get free ones."""
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


def compile_configs(n_services: int) -> tuple[Any, Any, float]:
    """The mesh and the mesh with ONE VirtualService weight changed, compiled (accepted) up front."""
    from meshgen import generate_mesh

    from xds.pipeline import compile_documents, load_text

    text = generate_mesh(n_services)
    changed = text.replace("weight: 90}", "weight: 50}", 1).replace("weight: 10}", "weight: 50}", 1)
    configs = []
    started = time.perf_counter()
    for t in (text, changed):
        docs, _ = load_text(t, "mesh.yaml")
        result = compile_documents(docs)
        assert result.config is not None, [str(d) for d in result.diagnostics[:3]]
        configs.append(result.config)
    return configs[0], configs[1], (time.perf_counter() - started) / 2


def pipeline_rebuilder(fleet: list[ProxyIdentity]) -> Rebuild:
    """What the control plane runs on a change: one SnapshotBuilder (its memo lives across changes)."""
    from xds.controlplane.gcpolicy import QuietCollector
    from xds.pipeline import SnapshotBuilder

    builder = SnapshotBuilder()
    collector = QuietCollector()  # as the control plane does after each build (xds/controlplane/gcpolicy.py)

    def rebuild(config: Any, changed_at: float) -> dict[str, Snapshot]:
        snaps = builder.build(config, fleet, changed_at=changed_at)
        collector.after_build()
        return snaps

    return rebuild


def synthetic_rebuilder(n_services: int, fleet: list[ProxyIdentity]) -> tuple[Rebuild, Any, Any]:
    """xds.testing.resources mesh: n EDS clusters + CLAs shared by every proxy, one small RouteConfiguration
    (a route per service), one listener per proxy. The edit re-targets the "/" route. Shared types are one
    mapping for all proxies, as SnapshotBuilder shares them."""
    from types import MappingProxyType

    from xds.cache.snapshot import _type_version
    from xds.testing.resources import http_listener, mesh_resources, route_config

    def frozen(items: list[Any]) -> tuple[MappingProxyType[str, Any], str]:
        mapping = {r.name: r for r in items}
        return MappingProxyType(mapping), _type_version(mapping)

    everything = mesh_resources(n_services)
    shared = {t: frozen([r for r in everything if r.type_url == t]) for t in (types.CLUSTER, types.ENDPOINT)}
    shared[types.SECRET] = frozen([])
    routes = [(f"/svc{i}/", f"svc{i}") for i in range(n_services)]
    configs = (
        route_config("outbound", [*routes, ("/", "svc0")]),
        route_config("outbound", [*routes, ("/", "svc1")]),
    )
    listeners = {
        p.id: frozen([http_listener("outbound", p.outbound_port or 15001, "outbound")]) for p in fleet
    }

    def rebuild(route: Any, changed_at: float) -> dict[str, Snapshot]:
        rds = frozen([route])
        out = {}
        for p in fleet:
            sets = {**shared, types.LISTENER: listeners[p.id], types.ROUTE: rds}
            out[p.id] = Snapshot(
                MappingProxyType({t: sets[t][0] for t in types.TYPE_ORDER}),
                MappingProxyType({t: sets[t][1] for t in types.TYPE_ORDER}),
                changed_at,
            )
        return out

    return rebuild, configs[0], configs[1]


# ---------------------------------------------------------------- fake proxy workers (separate processes)


# The bootstrap's ADS retry_back_off (envoy/bootstrap.yaml): a lost stream opens again after a jittered
# exponential wait, 0.25 s doubling up to 2 s, as a real Envoy of the fleet does.
RETRY_BASE_S, RETRY_MAX_S = 0.25, 2.0


def node_metadata(p: ProxyIdentity) -> dict[str, Any]:
    """What a sidecar's bootstrap puts under node.metadata.mecha for this identity (ProxyIdentity.from_node
    gives it back): a `mecha serve` replica knows the proxy only from its stream."""
    app = p.apps[0]
    return {
        "mode": "sidecar",
        "outbound_port": p.outbound_port,
        "dapr_http_port": p.dapr_http_port,
        "dapr_grpc_port": p.dapr_grpc_port,
        "labels": dict(p.labels),
        "apps": [{"name": app.name, "app_port": app.app_port, "inbound_port": app.inbound_port}],
    }


class Reconnecting:
    """One fake proxy that, like Envoy, opens its stream again when it ends (a control plane killed or
    restarted), moving to the next control-plane address after each lost stream (Envoy's xDS cluster
    balances a new connection over every replica)."""

    def __init__(self, pid: str, targets: list[str], make: Callable[[str, str], Any]) -> None:
        self.pid, self.targets, self.make = pid, targets, make
        self.turn = int(pid.removeprefix("fake")) if pid.startswith("fake") else 0  # proxies split evenly
        self.current: Any = None
        self.reconnects = 0
        self.failed_attempts = 0

    lost = 0  # streams of this worker that ended after a response
    why: dict[str, int] = {}  # attempts that ended before any response, by status

    async def run(self) -> None:
        import random

        import grpc

        failures = 0
        while True:
            proxy = self.current = self.make(self.pid, self.targets[self.turn % len(self.targets)])
            ended: Any = None
            try:
                await proxy.start()
                assert proxy.closed is not None
                ended = await proxy.closed
            except asyncio.CancelledError:
                await proxy.stop()
                raise
            except Exception as exc:  # the address refuses connections (a replica being restarted)
                ended = exc
            await proxy.stop()
            if ended is None:  # stopped by us
                return
            code = ended.code() if isinstance(ended, grpc.aio.AioRpcError) else ended
            if proxy.responses:
                failures = 0
                if not Reconnecting.lost:  # the first lost stream of a worker says why; the count at the end
                    print(f"fake proxy {self.pid}: stream ended {ended}", file=sys.stderr)
                Reconnecting.lost += 1
            else:
                failures += 1
                self.failed_attempts += 1
                Reconnecting.why[str(code)[:80]] = Reconnecting.why.get(str(code)[:80], 0) + 1
            self.reconnects += 1
            # a lost stream or an unreachable address: the next replica (Envoy's cluster balances the new
            # connection); a stream the server ended before answering (busy): its own replica again
            if (
                proxy.responses
                or code is grpc.StatusCode.UNAVAILABLE
                or not isinstance(code, grpc.StatusCode)
            ):
                self.turn += 1
            await asyncio.sleep(random.uniform(0, min(RETRY_MAX_S, RETRY_BASE_S * 2**failures)))


async def worker(
    targets: list[str], ids: list[str], delta: bool, tokens: str = "", root: str = "", meta: bool = False
) -> None:
    """Fake proxies, each on its own connection (as real proxies are); with tokens/root: TLS + credential;
    with meta: node metadata naming its ports and app (what a `mecha serve` replica builds from)."""
    import json

    from xds.testing.fake_proxy import FakeProxy

    creds, by_id = None, {}
    if tokens:
        from xds_fleet_security import channel_credentials

        creds, by_id = channel_credentials(Path(root)), json.loads(Path(tokens).read_text())  # noqa: ASYNC240

    def proxy(pid: str, target: str) -> FakeProxy:
        metadata = [("authorization", f"Bearer {by_id[pid]}")] if creds is not None else []
        node = node_metadata(identity(int(pid.removeprefix("fake")), False)) if meta else None
        return FakeProxy(target, pid, node, delta=delta, channel_credentials=creds, call_metadata=metadata,
                         own_connection=True, keep_bodies=False)  # fmt: skip

    # Each starts on its own, as proxies do: one whose connection is slow to come up delays no other.
    proxies = [Reconnecting(pid, targets, proxy) for pid in ids]
    runs = [asyncio.ensure_future(p.run()) for p in proxies]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    silent = [p.pid for p in proxies if p.current is None or p.current.responses == 0]
    if silent:
        print(f"worker: {len(silent)} of {len(proxies)} fake proxies have no response on their stream",
              file=sys.stderr)  # fmt: skip
    reconnects = sum(p.reconnects for p in proxies)
    if reconnects:
        failed = sum(p.failed_attempts for p in proxies)
        lost = Reconnecting.lost
        print(
            f"worker: {lost} streams lost, {reconnects} opened again ({failed} attempts ended before a "
            f"response: {Reconnecting.why})",
            file=sys.stderr,
        )
    for task in runs:
        task.cancel()
    await asyncio.gather(*runs, return_exceptions=True)


async def start_worker(
    targets: list[int], ids: list[str], delta: bool, security: FleetSecurity | None = None, meta: bool = False
) -> asyncio.subprocess.Process:
    args = [
        sys.executable,
        __file__,
        "--worker",
        "--targets",
        ",".join(map(str, targets)),
        "--ids",
        ",".join(ids),
    ]
    if delta:
        args.append("--delta")
    if meta:
        args.append("--meta")
    if security is not None:
        args += ["--tokens", str(security.tokens_file(ids)), "--root", str(security.root_file)]
    return await asyncio.create_subprocess_exec(*args)


async def start_workers(
    ports: list[int], ids: list[str], delta: bool, n: int, security: FleetSecurity | None = None,
    meta: bool = False,
) -> list[asyncio.subprocess.Process]:  # fmt: skip
    """Fake proxies split round-robin over n processes, so their own CPU is not one core's queue; each
    proxy's first control plane is ports[its number % len(ports)]."""
    groups = [ids[i::n] for i in range(max(1, n))]
    return [await start_worker(ports, g, delta, security, meta) for g in groups if g]


async def stop_processes(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------- measurement


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    out = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass  # ended
        out[name] = total
    return out


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


async def sync_order(server: XdsServer, count: int, timeout: float, poll: float = 0.25) -> dict[str, float]:  # noqa: ASYNC109
    """Seconds from now until each proxy was first seen with every type SYNCED (polled); TimeoutError
    names how many are in which state when `count` proxies are not all SYNCED within `timeout`."""
    started = time.monotonic()
    synced: dict[str, float] = {}
    while time.monotonic() - started < timeout:
        status = server.status()
        now = time.monotonic() - started
        for s in status:
            if s.proxy_id not in synced and s.state is SyncState.SYNCED:
                synced[s.proxy_id] = now
        if len(synced) >= count and len(status) == count and all(s.state is SyncState.SYNCED for s in status):
            return synced
        await asyncio.sleep(poll)
    states: dict[str, int] = {}
    for s in server.status():
        states[s.state] = states.get(s.state, 0) + 1
    c = server.counters
    raise TimeoutError(
        f"not all {count} proxies SYNCED after {timeout}s ({len(synced)} were): {states}; streams opened "
        f"{c.streams_opened}, rejected {c.streams_rejected} {c.errors[-3:]}"
    )


def sync_report(order: dict[str, float], real_prefix: str = "envoy") -> str:
    """Where the real Envoys landed among all proxies (rank by time first seen SYNCED)."""
    ranked = sorted(order.items(), key=lambda kv: kv[1])
    ranks = [i + 1 for i, (pid, _) in enumerate(ranked) if pid.startswith(real_prefix)]
    times = [order[pid] for pid, _ in ranked if pid.startswith(real_prefix)]
    return (
        f"real Envoys SYNCED at rank {ranks} of {len(ranked)} "
        f"({', '.join(f'{t:.1f}' for t in times)} s; first 10 % = rank <= {max(1, len(ranked) // 10)})"
    )


def row(label: str, values: list[float]) -> str:
    cols = [pct(values, 0.5), pct(values, 0.9), pct(values, 0.99), max(values)]
    return f"{label:<34}" + "".join(f"{v * 1000:8.1f}ms" for v in cols)


async def run(args: argparse.Namespace) -> None:
    n_fake = args.proxies - args.envoys
    fleet = [identity(i, True) for i in range(args.envoys)] + [identity(i, False) for i in range(n_fake)]
    started = time.perf_counter()
    if args.synthetic:
        rebuild, config_a, config_b = synthetic_rebuilder(args.services, fleet)
        compile_s = 0.0
    else:
        config_a, config_b, compile_s = compile_configs(args.services)
        rebuild = pipeline_rebuilder(fleet)
    t = time.perf_counter()
    snaps = rebuild(config_a, 0.0)
    first_build = time.perf_counter() - t
    print(
        f"{args.services} services, {len(fleet)} proxies: compile {compile_s:.2f} s per config, "
        f"first translate {first_build:.2f} s (neither timed below); "
        f"setup {time.perf_counter() - started:.1f} s"
    )
    sample = snaps[fleet[-1].id]
    sizes = {
        types.short_name(k): (len(v), sum(len(r.body) for r in v.values()))
        for k, v in sample.resources.items()
        if v
    }
    print("resources per proxy (count, bytes):", sizes)

    acks: dict[tuple[str, str], float] = {}

    def on_ack(proxy_id: str, type_url: str, version: str) -> None:
        if type_url == types.ROUTE:
            acks.setdefault((proxy_id, version), time.monotonic())

    workdir = Path(tempfile.mkdtemp(prefix="xds-push-bench-"))
    security = FleetSecurity(workdir) if args.tls else None
    cache = SnapshotCache()
    server = XdsServer(
        cache,
        ack_listener=on_ack,
        max_concurrent_pushes=args.max_pushes,
        **(security.server_options() if security is not None else {}),
    )
    port = await server.start("127.0.0.1:0")
    for p in fleet:  # the first publish is checked too, as the control plane does (its references read once)
        consistency.check(p.id, snaps[p.id])
        cache.set_snapshot(p.id, snaps[p.id])
    envoys: list[EnvoyProcess] = []
    procs: list[asyncio.subprocess.Process] = []
    profiler = None
    try:
        for p in fleet[: args.envoys]:
            yaml_text, _ = bootstrap_for(
                p.id, port, {"mode": "sidecar"}, delta=args.delta, initial_fetch_timeout_s=5
            )
            if security is not None:
                yaml_text = security.secure_bootstrap(yaml_text, p.id)
            e = EnvoyProcess(yaml_text, workdir, name=p.id, log_level="warning")
            await e.start(wait_ready=False)
            envoys.append(e)
        cpu_start = cpu_seconds(os.getpid())
        fake_ids = [p.id for p in fleet[args.envoys :]]
        procs = await start_workers([port], fake_ids, args.delta, args.workers, security)
        sync_profiler = None
        if args.profile_sync:
            import cProfile

            sync_profiler = cProfile.Profile()
            sync_profiler.enable()
        t = time.perf_counter()
        order = await sync_order(server, len(fleet), timeout=args.sync_timeout)
        sync_s = time.perf_counter() - t
        cp_cpu = cpu_seconds(os.getpid()) - cpu_start
        load_cpu = cpu_by_group(
            {"fake workers": [p.pid for p in procs], "Envoys": [e.pid for e in envoys if e.pid]}
        )
        if sync_profiler is not None:
            sync_profiler.disable()
            sync_profiler.dump_stats(args.profile_sync)
        transport = "TLS + credential per stream" if security is not None else "plaintext, no credential"
        print(
            f"{len(fleet)} proxies ({args.envoys} Envoy, {n_fake} fake in {len(procs)} processes, "
            f"{'delta' if args.delta else 'SotW'} ADS, {transport}) SYNCED in {sync_s:.1f} s; "
            f"control plane {cp_cpu:.1f} CPU-s = {cp_cpu / len(fleet) * 1000:.1f} CPU-ms per proxy sync; "
            f"RSS {rss_mb():.0f} MB (load {os.getloadavg()[0]:.1f})"
        )
        print(sync_report(order))
        print(
            "load generators' CPU over the sync: " + ", ".join(f"{k} {v:.1f} s" for k, v in load_cpu.items())
        )
        if args.sync_only:
            return
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()

        modes = ("leading edge (ours)", "100 ms trailing (baseline)")
        results: dict[str, list[float]] = {m: [] for m in modes}
        by_kind: dict[str, list[float]] = {"envoy": [], "fake": []}
        rebuilds: list[float] = []
        pushed: list[float] = []
        configs = (config_a, config_b)
        groups = {
            "control plane": [os.getpid()],
            "fake workers": [p.pid for p in procs],
            "Envoys": [e.pid for e in envoys if e.pid is not None],
        }
        cpu_used = dict.fromkeys(groups, 0.0)
        for run_no in range(args.runs * 2):
            mode = modes[run_no % 2]
            target = configs[(run_no + 1) % 2]
            timing: dict[str, float] = {}

            async def fire(_: list[int], target: Any = target, timing: dict[str, float] = timing) -> None:
                began = time.monotonic()
                new = rebuild(target, began)
                timing["built"] = time.monotonic()
                timing["build"] = timing["built"] - began
                for p in fleet:  # published only when consistent, as the control plane does
                    consistency.check(p.id, new[p.id], cache.get(p.id))
                    cache.set_snapshot(p.id, new[p.id])
                timing["want"] = {(p.id, new[p.id].version(types.ROUTE)) for p in fleet}  # type: ignore[assignment]

            debouncer: Debouncer[int] = Debouncer(fire, after=0.1, leading_edge=mode.startswith("leading"))
            acks.clear()
            cpu_before = cpu_by_group(groups)
            t0 = time.monotonic()  # the config change was accepted
            debouncer.trigger(run_no)
            deadline = t0 + 30
            while time.monotonic() < deadline:
                want = timing.get("want")
                if want is not None and want <= acks.keys():  # type: ignore[operator]
                    break
                await asyncio.sleep(0.002)
            want = timing.get("want")
            missing = want - acks.keys() if want is not None else {"all"}  # type: ignore[operator]
            assert not missing, f"{len(missing)} proxies did not ACK within 30 s"
            results[mode].extend(acks[k] - t0 for k in want)  # type: ignore[union-attr]
            for name, seconds in cpu_by_group(groups).items():
                cpu_used[name] += seconds - cpu_before[name]
            if mode == modes[0]:
                rebuilds.append(timing["build"])
                pushed.append(max(acks[k] for k in want) - timing["built"])  # type: ignore[union-attr]
                for pid, version in want:  # type: ignore[union-attr]
                    by_kind["envoy" if pid.startswith("envoy") else "fake"].append(acks[(pid, version)] - t0)
            await debouncer.close()
            await asyncio.sleep(0.3)  # keep runs isolated (the leading edge needs a quiet period)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        await wait_synced(server, len(fleet), timeout=30)

        flavour = "delta" if args.delta else "SotW"
        print(
            f"\nchange accepted -> rebuild -> push -> ACK of the changed RouteConfigurations, per proxy "
            f"({flavour}, {args.runs} runs x {len(fleet)} proxies)"
        )
        print(f"{'debounce':<34}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
        for mode, values in results.items():
            print(row(mode, values))
        for kind, values in by_kind.items():
            if values:
                print(row(f"  ours, {kind} proxies only", values))
        print(
            f"rebuild ({len(fleet)} proxies) median "
            f"{statistics.median(rebuilds) * 1000:.1f} ms; snapshots set -> last ACK median "
            f"{statistics.median(pushed) * 1000:.1f} ms"
        )
        pushes = args.runs * 2
        print(
            "CPU per push (change -> all ACKed): "
            + ", ".join(f"{name} {sec / pushes * 1000:.0f} ms" for name, sec in cpu_used.items())
            + f" (2 cores; machine load {os.getloadavg()[0]:.1f})"
        )
        ours, base = (pct(results[m], 0.99) * 1000 for m in modes)
        p50s = [pct(results[m], 0.5) * 1000 for m in modes]
        print(
            f"RESULT {flavour} p50 {p50s[0]:.1f} ms p99 {ours:.1f} ms | baseline p50 {p50s[1]:.1f} ms "
            f"p99 {base:.1f} ms | goal p99 < 100 ms: {'met' if ours < 100 else 'NOT met'}"
        )
    finally:
        await stop_processes(procs)
        for e in envoys:
            await e.stop()
        await server.stop(0.5)


# ---------------------------------------------------------------- `mecha serve` replicas (--replicas N)


def replica_report(meters: Meters, cpu_start: dict[str, float], synced: int) -> str:
    parts = []
    meters.sample()
    for r in meters.replicas:
        cpu = meters.cpu_s(r) - cpu_start[r.name]
        parts.append(
            f"{r.name}: RSS {meters.rss_mb(r):.0f} MB (peak {meters.peak_mb[r.name]:.0f}), {cpu:.1f} CPU-s"
            + (f" = {cpu / synced * 1000:.1f} CPU-ms per proxy sync" if synced else "")
        )
    return "; ".join(parts)


def stuck_report(state: FleetState, fleet: list[str]) -> str:
    stuck = [pid for pid in fleet if state.rows.get(pid, {}).get("state") != "SYNCED"]
    late = f" (API of {', '.join(state.unanswered)} did not answer the last poll)" if state.unanswered else ""
    if not stuck:
        return "stuck proxies: none" + late
    return f"stuck proxies: {len(stuck)} {state.states(fleet)} (e.g. {', '.join(stuck[:5])})" + late


async def run_replicas(args: argparse.Namespace) -> None:
    """N `mecha serve` processes on one PostgreSQL store, proxies split between them: the cold sync, then
    with --restart a SIGKILL of replica a (with one replica it starts again at once; with more, its proxies
    move to the others and a is restarted once they are all SYNCED)."""
    from meshgen import generate_mesh

    from xds.bootstrap import BootstrapParams, render

    n_fake = args.proxies - args.envoys
    fleet = [identity(i, True) for i in range(args.envoys)] + [identity(i, False) for i in range(n_fake)]
    ids = [p.id for p in fleet]
    workdir = Path(tempfile.mkdtemp(prefix="xds-push-bench-"))
    claims = {p.id: {k: [v] for k, v in p.labels} for p in fleet}  # what its node metadata says
    # the proxies' credentials are signed with the key the replicas share
    security = FleetSecurity(shared_keys(workdir), claims.__getitem__) if args.tls else None
    env = {"MECHA_MTLS": "0", "PYTHONWARNINGS": "ignore"}  # no workload certificates: as in-process
    envoys: list[EnvoyProcess] = []
    procs: list[asyncio.subprocess.Process] = []
    async with (
        fresh_schema(args.pg, prefix="bench_") as store,
        running_replicas(
            store, workdir, args.replicas, secure=security is not None, env=env, ready_within=120
        ) as replicas,
    ):
        meters = Meters(replicas)
        sampler = asyncio.ensure_future(meters.sample_forever())
        try:
            for r in replicas:
                print(f"replica {r.name} ready in {r.ready_s:.1f} s (xDS port {r.xds_port})")
            t = time.perf_counter()
            outcome = await apply(replicas[0], "mesh.yaml", generate_mesh(args.services))
            head = int(outcome.get("version") or await replicas[0].version())
            for r in replicas[1:]:
                while await r.version() < head:  # noqa: ASYNC110 (it follows the store: NOTIFY, re-read)
                    await asyncio.sleep(0.1)
            print(
                f"{args.services}-service mesh applied to replica a (version {head}) and on every replica "
                f"in {time.perf_counter() - t:.1f} s; store {store.split('?')[0]}"
            )
            ports = [r.xds_port for r in replicas]
            for p in fleet[: args.envoys]:
                params = BootstrapParams(
                    proxy_id=p.id, xds_port=ports[0], admin_port=free_port(), metadata=node_metadata(p),
                    delta=args.delta, initial_fetch_timeout_s=5,
                    xds_addresses=tuple(("127.0.0.1", port) for port in ports) if len(ports) > 1 else (),
                )  # fmt: skip
                yaml_text = render(params)
                if security is not None:
                    yaml_text = security.secure_bootstrap(yaml_text, p.id)
                envoys.append(EnvoyProcess(yaml_text, workdir, name=p.id, log_level="warning"))
            meters.reset_peaks()
            cpu_start = {r.name: meters.cpu_s(r) for r in replicas}
            t0 = time.monotonic()
            for e in envoys:
                await e.start(wait_ready=False)
            procs = await start_workers(ports, ids[args.envoys :], args.delta, args.workers, security, True)
            order, state = await wait_fleet_synced(replicas, ids, within=args.sync_timeout, started=t0)
            done = len(order) == len(ids)
            transport = "TLS + credential per stream" if security is not None else "plaintext, no credential"
            flavour = "delta" if args.delta else "SotW"
            outcome_text = (
                f"all SYNCED in {max(order.values()):.1f} s"
                if done
                else f"NOT all SYNCED in {args.sync_timeout:.0f} s"
            )
            print(
                f"COLD {len(ids)} proxies ({args.envoys} Envoy, {n_fake} fake, {flavour} ADS, {transport}) "
                f"on "
                f"{len(replicas)} replicas: {outcome_text} (load {os.getloadavg()[0]:.1f}); "
                f"proxies per replica {state.where}"
            )
            print("  " + replica_report(meters, cpu_start, len(order)))
            load_cpu = cpu_by_group(
                {"fake workers": [p.pid for p in procs], "Envoys": [e.pid or 0 for e in envoys]}
            )
            print("  load generators' CPU: " + ", ".join(f"{k} {v:.1f} s" for k, v in load_cpu.items()))
            if not done:
                print("  " + stuck_report(state, ids))
            else:
                print("  " + sync_report(order))
            await asyncio.sleep(args.settle)  # streams idle: the RSS a replica keeps for its proxies
            print(f"  after {args.settle:.0f} s idle: " + replica_report(meters, cpu_start, 0))
            if args.restart:
                await restart_herd(args, meters, ids)
        finally:
            await stop_processes(procs)
            for e in envoys:
                await e.stop()
            sampler.cancel()
    print(f"logs: {workdir}")


async def restart_herd(args: argparse.Namespace, meters: Meters, ids: list[str]) -> None:
    replicas = meters.replicas
    victim, others = replicas[0], replicas[1:]
    meters.reset_peaks()
    cpu_start = {r.name: meters.cpu_s(r) for r in replicas}
    held = (await poll_fleet([victim], time.monotonic())).where.get(victim.name, 0)
    t0 = time.monotonic()
    await meters.kill(victim)
    ready = 0.0
    if not others:
        await victim.start(ready_within=120)
        ready = victim.ready_s
    order, state = await wait_fleet_synced(replicas, ids, within=args.sync_timeout, started=t0)
    done = len(state.synced() & set(ids)) == len(ids)
    took = max(order.values()) if done else args.sync_timeout
    what = f"restarted (ready {ready:.1f} s after the kill)" if not others else "not restarted yet"
    print(
        f"HERD SIGKILL of replica {victim.name} holding {held} streams, {what}: "
        + (f"all {len(ids)} SYNCED again {took:.1f} s after the kill" if done
           else f"NOT all SYNCED {args.sync_timeout:.0f} s after the kill")
        + f" (load {os.getloadavg()[0]:.1f}); proxies per replica {state.where}"
    )  # fmt: skip
    print("  " + stuck_report(state, ids))
    print("  " + replica_report(meters, cpu_start, len(ids)))
    if others:  # the killed replica comes back: it catches up from the store; its proxies stay where they are
        await victim.start(ready_within=120)
        ready = victim.ready_s
        version = await victim.version()
        await asyncio.sleep(args.settle)
        state = await poll_fleet(replicas, t0)
        print(
            f"  replica {victim.name} restarted: ready in {ready:.1f} s at version {version}; proxies per "
            f"replica {state.where}; {stuck_report(state, ids)}"
        )
        print("  " + replica_report(meters, cpu_start, 0))


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
    parser.add_argument("--workers", type=int, default=2, help="processes running the fake proxies")
    parser.add_argument("--max-pushes", type=int, default=100)
    parser.add_argument("--profile", default="", help="write a cProfile of the timed runs to this file")
    parser.add_argument(
        "--tls", action="store_true", help="TLS + a workload credential per stream (as mecha serves)"
    )
    parser.add_argument("--sync-only", action="store_true", help="stop after the full sync (no push runs)")
    parser.add_argument("--sync-timeout", type=float, default=150.0)
    parser.add_argument("--profile-sync", default="", help="write a cProfile of the full sync to this file")
    parser.add_argument(
        "--replicas", type=int, default=0,
        help="N `mecha serve` processes on one PostgreSQL store, proxies split between them (0: the control "
        "plane in this process); the cold sync only, then --restart",
    )  # fmt: skip
    parser.add_argument(
        "--restart", action="store_true",
        help="with --replicas: SIGKILL replica a once all are SYNCED, every proxy reconnecting at once",
    )  # fmt: skip
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="with --replicas")
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before the steady RSS")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", default="", help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--targets", default="", help=argparse.SUPPRESS)
    parser.add_argument("--meta", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ids", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        ids = [i for i in args.ids.split(",") if i]
        targets = [f"127.0.0.1:{port}" for port in args.targets.split(",")]
        asyncio.run(worker(targets, ids, args.delta, args.tokens, args.root, args.meta))
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(run_replicas(args) if args.replicas else run(args))


if __name__ == "__main__":
    main()
