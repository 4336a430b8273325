"""Control-plane memory: RSS of the server process with N services x M proxies connected and SYNCED.

The mesh is compiled and translated by xds.pipeline (bench/meshgen.py) exactly as the control plane keeps it:
one accepted config, one SnapshotBuilder (its memo), one Snapshot per proxy in the cache. Nothing else is
retained (the YAML text and documents are dropped after compiling). Proxies are sidecars on one host (own
ports each); the fake proxies run in 2 separate processes, so only the control plane's memory is measured.
With --synthetic, snapshots come from xds.testing.resources instead.

    .venv/bin/python bench/xds_memory_bench.py [--services 1000] [--proxies 100] [--delta] [--synthetic]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from procstat import rss_mb  # noqa: E402
from xds_push_bench import (  # noqa: E402
    compile_configs,
    identity,
    pipeline_rebuilder,
    start_workers,
    stop_processes,
    synthetic_rebuilder,
    wait_synced,
)

from xds import types  # noqa: E402
from xds.cache import SnapshotCache  # noqa: E402
from xds.server import XdsServer  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    base = rss_mb()
    fleet = [identity(i, False) for i in range(args.proxies)]
    started = time.perf_counter()
    if args.synthetic:
        rebuild, config, _ = synthetic_rebuilder(args.services, fleet)
    else:
        config, _, _ = compile_configs(args.services)  # the edited config is dropped at once
        rebuild = pipeline_rebuilder(fleet)
    gc.collect()
    compiled = rss_mb()
    snaps = rebuild(config, 0.0)
    build_s = time.perf_counter() - started
    gc.collect()
    after_build = rss_mb()
    sample = snaps[fleet[0].id]
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    for p in fleet:
        cache.set_snapshot(p.id, snaps[p.id])
    del snaps  # the cache holds them, as in the control plane
    procs = await start_workers([port], [p.id for p in fleet], args.delta, args.workers)
    try:
        started = time.perf_counter()
        await wait_synced(server, len(fleet), timeout=150)
        sync_s = time.perf_counter() - started
        gc.collect()
        connected = rss_mb()
        peak = rss_mb(field="VmHWM")
    finally:
        await stop_processes(procs)
    for _ in range(200):
        if not server.status():
            break
        await asyncio.sleep(0.05)
    gc.collect()
    after_disconnect = rss_mb()
    left = len(cache.proxy_ids())
    await server.stop(0.5)
    flavour = "delta" if args.delta else "SotW"
    print(
        f"{args.services} services x {args.proxies} proxies ({flavour} ADS, "
        f"{'synthetic' if args.synthetic else 'xds.pipeline'} mesh); resources per proxy: "
        f"{ {types.short_name(k): len(v) for k, v in sample.resources.items() if v} }"
    )
    print(f"{'stage':<50}{'RSS':>10}")
    for label, value in [
        ("interpreter + imports", base),
        ("config compiled", compiled),
        (f"snapshots built for all proxies ({build_s:.1f} s)", after_build),
        (f"all proxies connected and SYNCED ({sync_s:.1f} s)", connected),
        (f"all disconnected (snapshots left in cache: {left})", after_disconnect),
        ("peak (VmHWM)", peak),
    ]:
        print(f"{label:<50}{value:8.1f}MB")
    print(
        f"server-side growth for {args.proxies} streams: {connected - after_build:.1f} MB "
        f"({(connected - after_build) / args.proxies * 1024:.0f} KB per proxy)"
    )
    print(
        f"RESULT {flavour} RSS connected {connected:.1f} MB, peak {peak:.1f} MB, per stream "
        f"{(connected - after_build) / args.proxies * 1024:.0f} KB | goal < 300 MB: "
        f"{'met' if connected < 300 else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--delta", action="store_true")
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="processes running the fake proxies")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
