"""xDS server memory: RSS of the server process with N services x M proxies connected (fake proxies run in a
separate process, so only the server's own memory is measured). Snapshots come from xds.pipeline
(bench/meshgen.py) or, with --synthetic, from xds.testing.resources.

    .venv/bin/python bench/xds_memory_bench.py [--services 1000] [--proxies 100] [--delta] [--synthetic]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from xds_push_bench import build_snapshots, identity, start_worker, synthetic_snapshots, wait_synced  # noqa: E402

from xds import types  # noqa: E402
from xds.cache import SnapshotCache  # noqa: E402
from xds.server import XdsServer  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace) -> None:
    base = rss_mb()
    fleet = [identity(i, False) for i in range(args.proxies)]
    build = synthetic_snapshots if args.synthetic else build_snapshots
    snaps, _, build_s, _ = build(args.services, fleet)
    gc.collect()
    after_build = rss_mb()
    sample = snaps[fleet[0].id]
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    for p in fleet:
        cache.set_snapshot(p.id, snaps[p.id])
    proc = await start_worker(port, [p.id for p in fleet], args.delta)
    try:
        started = time.perf_counter()
        await wait_synced(server, len(fleet), timeout=600)
        sync_s = time.perf_counter() - started
        gc.collect()
        connected = rss_mb()
        peak = max(connected, rss_mb())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    for _ in range(200):
        if not server.status():
            break
        await asyncio.sleep(0.05)
    gc.collect()
    after_disconnect = rss_mb()
    left = len(cache.proxy_ids())
    await server.stop(0.5)
    print(
        f"{args.services} services x {args.proxies} proxies ({'delta' if args.delta else 'SotW'} ADS, "
        f"{'synthetic' if args.synthetic else 'xds.pipeline'} mesh); resources per proxy: "
        f"{ {types.short_name(k): len(v) for k, v in sample.resources.items() if v} }"
    )
    print(f"{'stage':<44}{'RSS':>10}")
    for label, value in [
        ("interpreter + imports", base),
        (f"snapshots built ({build_s:.1f} s)", after_build),
        (f"all proxies connected and SYNCED ({sync_s:.1f} s)", connected),
        (f"all disconnected (snapshots left in cache: {left})", after_disconnect),
    ]:
        print(f"{label:<44}{value:8.1f}MB")
    print(
        f"server-side growth for {args.proxies} streams: {connected - after_build:.1f} MB "
        f"({(connected - after_build) / args.proxies * 1024:.0f} KB per proxy)"
    )
    print(f"goal < 300 MB RSS: {'met' if peak < 300 else 'NOT met'} ({peak:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--delta", action="store_true")
    parser.add_argument("--synthetic", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
