"""Sidecar mode vs node mode for N apps: memory of the data plane and time to start.

    .venv/bin/python bench/modes_bench.py [--apps 10] [--json out.json]

Each mode runs the `mecha up` machinery (xds.runner.Stack) on free ports: the control plane, N demo apps, and
per proxy one real Envoy (--concurrency 1) plus one capability service. Sidecar mode has N proxies, node mode
one, whose capability-service process hosts one runtime per app (own app id, own Dapr ports on the node's
Envoy). Measured after every proxy is SYNCED and every capability service healthy:
  - data-plane memory: sum of VmRSS of every Envoy and capability-service process;
  - start time: from Stack.start() until then (control plane and apps included, same in both modes).
Goal (docs/modes.md): node mode below 1/3 of sidecar memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from procstat import rss_mb

from xds.demo.config import DemoLayout, DemoProxy, DemoWorkload
from xds.runner.stack import Stack, StackOptions


class Ports:
    def __init__(self) -> None:
        self.used: set[int] = set()

    def __call__(self) -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("0.0.0.0", 0))
                port = int(sock.getsockname()[1])
            if port not in self.used:
                self.used.add(port)
                return port


def layout(mode: str, apps: int, port: Ports) -> DemoLayout:
    """N ratings workloads (v1..vN): the app kind does not matter for the data plane's footprint."""
    workloads = [DemoWorkload("ratings", f"v{i + 1}", port(), port()) for i in range(apps)]
    if mode == "node":  # every app its own Dapr listeners and runtime, as `mecha up --mode node`
        own = ("dapr_http_port", "dapr_grpc_port", "capabilities_http_port", "capabilities_grpc_port")
        workloads = [replace(w, **{name: port() for name in own}) for w in workloads]
    groups = [[w] for w in workloads] if mode == "sidecar" else [workloads]
    proxies = tuple(
        DemoProxy(
            id=group[0].name if mode == "sidecar" else "node-0",
            mode=mode,
            admin_port=port(),
            outbound_port=port(),
            workloads=tuple(group),
            dapr_http_port=port(),
            dapr_grpc_port=port(),
            capabilities_http_port=port(),
            capabilities_grpc_port=port(),
        )
        for group in groups
    )
    return DemoLayout(mode=mode, proxies=proxies)


async def measure(mode: str, apps: int) -> dict[str, Any]:
    port = Ports()
    with tempfile.TemporaryDirectory(prefix=f"mecha-bench-{mode}-") as tmp:
        stack = Stack(
            StackOptions(
                layout=layout(mode, apps, port), state_dir=Path(tmp), api_port=port(), xds_port=port()
            )
        )
        started = time.perf_counter()
        try:
            await stack.start(within_s=300)
            start_s = time.perf_counter() - started
            await asyncio.sleep(2)  # let every process settle after its first config
            per_kind: dict[str, float] = {"envoy": 0, "capabilities": 0, "control-plane": 0, "app": 0}
            counts: dict[str, int] = dict.fromkeys(per_kind, 0)
            for child in stack.sup.children:
                if child.pid is not None and child.exited is None:
                    per_kind[child.kind] += rss_mb(child.pid)
                    counts[child.kind] += 1
            if stack.notes:
                print("\n".join(f"note: {n}" for n in stack.notes), file=sys.stderr)
        finally:
            await stack.stop()
    return {
        "mode": mode,
        "apps": apps,
        "proxies": counts["envoy"],
        "capability_services": counts["capabilities"],
        "start_s": round(start_s, 2),
        "data_plane_rss_mib": round(per_kind["envoy"] + per_kind["capabilities"], 1),
        "envoy_rss_mib": round(per_kind["envoy"], 1),
        "capabilities_rss_mib": round(per_kind["capabilities"], 1),
        "control_plane_rss_mib": round(per_kind["control-plane"], 1),
    }


async def run(apps: int) -> dict[str, Any]:
    sidecar = await measure("sidecar", apps)
    node = await measure("node", apps)
    ratio = node["data_plane_rss_mib"] / sidecar["data_plane_rss_mib"]
    return {"sidecar": sidecar, "node": node, "node_over_sidecar_memory": round(ratio, 3), "goal": "< 0.333"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.apps))
    cols = ("mode", "proxies", "capability_services", "data_plane_rss_mib", "envoy_rss_mib",
            "capabilities_rss_mib", "start_s")  # fmt: skip
    print(" | ".join(cols))
    for mode in ("sidecar", "node"):
        print(" | ".join(str(result[mode][c]) for c in cols))
    print(f"node / sidecar data-plane memory: {result['node_over_sidecar_memory']} (goal {result['goal']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["node_over_sidecar_memory"] < 1 / 3 else 1


if __name__ == "__main__":
    sys.exit(main())
