"""Sidecar scoping benchmark: translation time and bytes pushed per proxy for a generated mesh
(bench/meshgen.py), without and with a namespace-local Sidecar (`egress: [{hosts: ["./*"]}]`).

    .venv/bin/python bench/istio_scoping_bench.py [n_services=1000] [namespaces=10] [n_proxies=50]

Bytes per proxy = the serialized size of every resource in its snapshot (what a first SotW push sends).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from meshgen import generate_mesh

from xds import types
from xds.cache.snapshot import Snapshot
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import AppBinding, ProxyIdentity


def fleet(n: int, namespaces: int) -> list[ProxyIdentity]:
    return [
        ProxyIdentity(
            id=f"svc{i:05d}-v1",
            namespace=f"ns{i % namespaces}",
            outbound_port=15001,
            dapr_http_port=3500,
            dapr_grpc_port=50001,
            labels=(("app", f"svc{i:05d}"), ("version", "v1")),
            apps=(
                AppBinding(
                    name=f"svc{i:05d}", namespace=f"ns{i % namespaces}", app_port=8080, inbound_port=15006
                ),
            ),
        )
        for i in range(n)
    ]


def pushed_bytes(snap: Snapshot) -> int:
    return sum(len(r.body) for t in types.TYPE_ORDER for r in snap.of(t).values())


def run(n_services: int, namespaces: int, n_proxies: int, sidecars: bool) -> dict[str, float]:
    text = generate_mesh(n_services, namespaces=namespaces, sidecars=sidecars)
    docs, _ = load_text(text, "mesh.yaml")
    t0 = time.perf_counter()
    result = compile_documents(docs)
    t1 = time.perf_counter()
    assert result.config is not None, [str(d) for d in result.errors[:5]]
    proxies = fleet(n_proxies, namespaces)
    builder = SnapshotBuilder()
    t2 = time.perf_counter()
    snaps = builder.build(result.config, proxies)
    t3 = time.perf_counter()
    sizes = [pushed_bytes(s) for s in snaps.values()]
    clusters = [len(s.of(types.CLUSTER)) for s in snaps.values()]
    return {
        "compile_ms": (t1 - t0) * 1000,
        "translate_ms": (t3 - t2) * 1000,
        "per_proxy_ms": (t3 - t2) * 1000 / n_proxies,
        "bytes_per_proxy": statistics.mean(sizes),
        "clusters_per_proxy": statistics.mean(clusters),
    }


def main() -> None:
    n_services = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    namespaces = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    n_proxies = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    print(f"{n_services} services in {namespaces} namespaces, {n_proxies} proxies (first build, cold memo)")
    rows = {
        label: run(n_services, namespaces, n_proxies, sc)
        for label, sc in (("no Sidecar", False), ("Sidecar ./*", True))
    }
    print(f"{'':14}{'compile':>12}{'translate':>12}{'per proxy':>12}{'KiB/proxy':>12}{'clusters':>10}")
    for label, r in rows.items():
        print(
            f"{label:14}{r['compile_ms']:10.0f}ms{r['translate_ms']:10.0f}ms{r['per_proxy_ms']:10.1f}ms"
            f"{r['bytes_per_proxy'] / 1024:12.1f}{r['clusters_per_proxy']:10.0f}"
        )
    full, scoped = rows["no Sidecar"], rows["Sidecar ./*"]
    print(f"bytes per proxy: {full['bytes_per_proxy'] / scoped['bytes_per_proxy']:.1f}x smaller with scoping")


if __name__ == "__main__":
    main()
