"""Full sync of a generated 1,000-service mesh to a NEW real Envoy: control-plane time vs Envoy's own time.

The config is accepted (compiled) and translated before any Envoy connects, as when a proxy joins a running
mesh; that one-time translate is reported apart. Each run then starts a new Envoy (new node id, its own
ports, as a sidecar on one host) and times, from Envoy process start and from its stream open, until CDS,
EDS, LDS and RDS are all ACKed at the snapshot's versions. Control-plane (CP) time is measured with
time.perf_counter around every piece of server work for that stream: decoding its requests and node, building
its snapshot (on_new_proxy, as xds.controlplane does), the protocol state (diff + encoding) and the awaited
gRPC writes. Envoy time is the rest: Envoy parsing and applying between our writes and its ACKs. Also
reported: the process CPU time of the control plane over the same window, Envoy's /ready time and RSS.

    .venv/bin/python bench/full_sync_bench.py [--services 1000] [--runs 3] [--delta]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
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

from procstat import rss_mb  # noqa: E402

from xds import types  # noqa: E402
from xds.cache import SnapshotCache  # noqa: E402
from xds.proxy import AppBinding, ProxyIdentity  # noqa: E402
from xds.server import XdsServer  # noqa: E402
from xds.server import server as server_module  # noqa: E402
from xds.server.delta import DeltaStreamState  # noqa: E402
from xds.server.sotw import SotwStreamState  # noqa: E402
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port  # noqa: E402

SYNC_TYPES = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)


class CpTimer:
    """Sums wall time spent inside the control plane's own code (patched around its entry points)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.by_part: dict[str, float] = {}

    def add(self, part: str, seconds: float) -> None:
        self.seconds += seconds
        self.calls += 1
        self.by_part[part] = self.by_part.get(part, 0.0) + seconds

    def reset(self) -> None:
        self.seconds, self.calls, self.by_part = 0.0, 0, {}

    def wrap_sync(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - started)

        return timed

    def wrap_async(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - started)

        return timed

    def install(self) -> None:
        """Time request decoding, node parsing, protocol state (diff + encode) and writes (XdsServer._apply
        awaits each context.write)."""
        for name in ("decode_sotw_request", "decode_delta_request", "identity_from_node"):
            setattr(server_module, name, self.wrap_sync("decode", getattr(server_module, name)))
        for cls in (SotwStreamState, DeltaStreamState):
            for name in ("handle_request", "set_snapshot"):
                setattr(cls, name, self.wrap_sync("state+encode", getattr(cls, name)))
        XdsServer._apply = self.wrap_async("write", XdsServer._apply)  # type: ignore[method-assign]


def sidecar(run_no: int) -> tuple[ProxyIdentity, dict[str, Any]]:
    """A new sidecar with its own free ports, and the node metadata its bootstrap carries."""
    out, dhttp, dgrpc, app, inbound = (free_port() for _ in range(5))
    name = f"svc{run_no:05d}"
    meta = {
        "mode": "sidecar",
        "outbound_port": out,
        "dapr_http_port": dhttp,
        "dapr_grpc_port": dgrpc,
        "labels": {"app": name, "version": "v1"},
        "apps": [{"name": name, "app_port": app, "inbound_port": inbound}],
    }
    identity = ProxyIdentity(
        id=f"joiner{run_no:02d}",
        outbound_port=out,
        dapr_http_port=dhttp,
        dapr_grpc_port=dgrpc,
        labels=(("app", name), ("version", "v1")),
        apps=(AppBinding(name=name, app_port=app, inbound_port=inbound),),
    )
    return identity, meta


async def run(args: argparse.Namespace) -> None:
    from meshgen import generate_mesh

    from xds.controlplane.gcpolicy import QuietCollector
    from xds.pipeline import SnapshotBuilder, compile_documents, load_text

    started = time.perf_counter()
    docs, _ = load_text(generate_mesh(args.services), "mesh.yaml")
    result = compile_documents(docs)
    assert result.config is not None, [str(d) for d in result.diagnostics[:3]]
    config = result.config
    compile_s = time.perf_counter() - started
    builder = SnapshotBuilder()
    collector = QuietCollector()  # the control plane freezes the GC after each build (gcpolicy.py)
    warm_fleet = [sidecar(1000 + i)[0] for i in range(2)]  # proxies of the running mesh
    started = time.perf_counter()
    builder.build(config, warm_fleet)
    collector.after_build()
    translate_s = time.perf_counter() - started

    timer = CpTimer()
    acked: dict[str, set[str]] = {}
    done: dict[str, asyncio.Event] = {}
    cache = SnapshotCache()

    async def on_new_proxy(proxy: ProxyIdentity) -> None:
        began = time.perf_counter()
        snapshots = builder.build(config, [proxy], changed_at=time.monotonic())  # as xds.controlplane does
        collector.after_build()
        cache.set_snapshot(proxy.id, snapshots[proxy.id])
        timer.add("build snapshot", time.perf_counter() - began)

    cache.on_new_proxy = on_new_proxy

    def on_ack(proxy_id: str, type_url: str, version: str) -> None:
        snap = cache.get(proxy_id)
        if snap is None or version != snap.version(type_url):
            return
        got = acked.setdefault(proxy_id, set())
        got.add(type_url)
        if got >= set(SYNC_TYPES) and proxy_id in done:
            done[proxy_id].set()

    stream_open: dict[str, float] = {}
    original_identity = server_module.identity_from_node

    def identity_seen(node: bytes | None, where: str) -> ProxyIdentity:
        found = original_identity(node, where)
        stream_open.setdefault(found.id, time.perf_counter())
        return found

    server_module.identity_from_node = identity_seen  # type: ignore[assignment]
    timer.install()
    server = XdsServer(cache, ack_listener=on_ack)
    port = await server.start("127.0.0.1:0")
    workdir = Path(tempfile.mkdtemp(prefix="full-sync-bench-"))
    flavour = "delta" if args.delta else "SotW"
    print(
        f"{args.services} services: compile {compile_s:.2f} s, one-time translate (mesh + 2 proxies) "
        f"{translate_s:.2f} s, not in the times below; {flavour} ADS, Envoy --concurrency 1"
    )
    header = f"{'run':<5}{'total':>9}{'stream':>9}{'CP':>9}{'Envoy':>9}{'CP/total':>10}{'CP/strm':>9}"
    print(header + f"{'CPU':>9}{'ready':>9}{'RSS':>9}  CP parts (ms)")
    rows: list[dict[str, float]] = []
    try:
        for run_no in range(args.runs):
            proxy, meta = sidecar(run_no)
            done[proxy.id] = asyncio.Event()
            yaml_text, _ = bootstrap_for(proxy.id, port, meta, delta=args.delta, initial_fetch_timeout_s=10)
            envoy = EnvoyProcess(yaml_text, workdir, name=proxy.id, log_level="warning")
            timer.reset()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            await envoy.start(wait_ready=False)
            try:
                ready_task = asyncio.ensure_future(envoy.wait_ready(60))
                await asyncio.wait_for(done[proxy.id].wait(), 60)
                t_acked = time.perf_counter()
                cpu = time.process_time() - cpu0
                cp = timer.seconds
                parts = {k: round(v * 1000, 1) for k, v in timer.by_part.items()}
                await ready_task
                t_ready = time.perf_counter()
                assert envoy.pid is not None
                rss = rss_mb(envoy.pid)
            finally:
                await envoy.stop()
            total = t_acked - t0
            stream = t_acked - stream_open[proxy.id]
            row = {
                "total": total,
                "stream": stream,
                "cp": cp,
                "envoy": stream - cp,
                "share": cp / total,
                "share_stream": cp / stream,
                "cpu": cpu,
                "ready": t_ready - t0,
                "rss": rss,
            }
            rows.append(row)
            print(
                f"{run_no + 1:<5}"
                + "".join(f"{row[k] * 1000:7.0f}ms" for k in ("total", "stream", "cp", "envoy"))
                + f"{row['share'] * 100:9.1f}%{row['share_stream'] * 100:8.1f}%"
                + f"{cpu * 1000:7.0f}ms{row['ready'] * 1000:7.0f}ms{rss:7.1f}MB  {parts}"
            )
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        lo = {k: min(r[k] for r in rows) for k in rows[0]}
        hi = {k: max(r[k] for r in rows) for k in rows[0]}
        print(
            f"\nmedian of {len(rows)}: total {med['total'] * 1000:.0f} ms "
            f"(range {lo['total'] * 1000:.0f}-{hi['total'] * 1000:.0f}), stream open -> all ACKed "
            f"{med['stream'] * 1000:.0f} ms, CP {med['cp'] * 1000:.0f} ms "
            f"(range {lo['cp'] * 1000:.0f}-{hi['cp'] * 1000:.0f}), Envoy {med['envoy'] * 1000:.0f} ms, "
            f"/ready {med['ready'] * 1000:.0f} ms, Envoy RSS {med['rss']:.1f} MB"
        )
        share = med["share"] * 100
        print(
            f"RESULT {flavour} CP share of total {share:.1f}% (range {lo['share'] * 100:.1f}-"
            f"{hi['share'] * 100:.1f}%), of stream time {med['share_stream'] * 100:.1f}% | "
            f"goal CP <= 10% of total: {'met' if share <= 10 else 'NOT met'}"
        )
    finally:
        await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delta", action="store_true", help="delta ADS (default SotW)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
