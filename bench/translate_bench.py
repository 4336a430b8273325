"""Translate benchmark: a generated mesh (bench/meshgen.py) through compile + SnapshotBuilder.

Measures: the first proxy (cold memo), each additional proxy, and a one-route change re-translated for all
proxies; the same steps through the naive path (full messages, no memo, Snapshot.build) for the ratios.

    .venv/bin/python bench/translate_bench.py [n_services=1000] [n_proxies=100] [single|scoped]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the naive translator is the tests' oracle (tests/xds/config/translate_oracle.py)
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests" / "xds" / "config"))

from meshgen import generate_mesh
from translate_oracle import build_naive

from xds import types
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import AppBinding, ProxyIdentity


def proxies(n: int, same_ports: bool = True) -> list[ProxyIdentity]:
    """Sidecars with Dapr listeners. same_ports: every pod uses 15001/3500/50001 (own network namespace,
    as in Kubernetes), so RDS names and bodies are shared; else distinct ports as on one host, where
    each proxy's route configurations carry their own names and so their own copy of the bodies."""
    return [
        ProxyIdentity(
            id=f"svc{i:05d}-v1",
            outbound_port=15001 if same_ports else 20000 + i,
            dapr_http_port=3500 if same_ports else 30000 + i,
            dapr_grpc_port=50001 if same_ports else 40000 + i,
            capabilities_http=f"127.0.0.1:{50000 + i}",
            capabilities_grpc=f"127.0.0.1:{55000 + i}",
            labels=(("app", f"svc{i:05d}"), ("version", "v1")),
            apps=(AppBinding(name=f"svc{i:05d}", app_port=10000 + i, inbound_port=60000 + i),),
        )
        for i in range(n)
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def main() -> None:
    n_services = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    n_proxies = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    text = generate_mesh(n_services)
    t0 = time.perf_counter()
    docs, _ = load_text(text, "mesh.yaml")
    t1 = time.perf_counter()
    result = compile_documents(docs)
    t2 = time.perf_counter()
    assert result.config is not None, [str(d) for d in result.diagnostics[:5]]
    fleet = proxies(n_proxies)
    # --route-tables: "single" (default here) is what the naive reference path builds; "scoped" is what
    # `auto` picks from 100 services on (per-service route tables, xds/translate/scoped_routes.py)
    tables = sys.argv[3] if len(sys.argv) > 3 else "single"
    builder = SnapshotBuilder(route_tables=tables)

    t = time.perf_counter()
    first = builder.build(result.config, fleet[:1])
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    builder.build(result.config, fleet)
    all_s = time.perf_counter() - t
    per_extra = (all_s) / n_proxies  # includes memo lookups for the mesh part on a warm memo

    # one-route change: svc00000's split becomes 50/50 (only that document's text changes)
    changed = text.replace("weight: 90}", "weight: 50}", 1).replace("weight: 10}", "weight: 50}", 1)
    docs2, _ = load_text(changed, "mesh.yaml")
    t = time.perf_counter()
    result2 = compile_documents(docs2)
    compile2_s = time.perf_counter() - t
    assert result2.config is not None
    t = time.perf_counter()
    after = builder.build(result2.config, fleet)
    change_s = time.perf_counter() - t
    # the same edit for a fleet with distinct ports (one host): per-proxy copies of the RDS bodies
    apart = proxies(n_proxies, same_ports=False)
    builder2 = SnapshotBuilder(route_tables=tables)
    builder2.build(result.config, apart)
    t = time.perf_counter()
    builder2.build(result2.config, apart)
    change_apart_s = time.perf_counter() - t
    snap = first[fleet[0].id]
    n_res = {k.rsplit(".", 1)[-1]: len(v) for k, v in snap.resources.items()}

    # naive path: full messages, no memo, Snapshot.build per proxy
    t = time.perf_counter()
    naive_first = build_naive(result.config, fleet[0])
    naive_first_s = time.perf_counter() - t
    sample = min(3, n_proxies)
    t = time.perf_counter()
    for p in fleet[1 : 1 + sample]:
        build_naive(result2.config, p)
    naive_per_proxy = (time.perf_counter() - t) / max(1, sample)
    naive_change = naive_per_proxy * n_proxies  # a naive control plane rebuilds every proxy

    cds_url, rds_url = types.CLUSTER, types.ROUTE
    if tables == "single":  # the reference path builds the single table
        assert naive_first.of(cds_url).keys() == snap.of(cds_url).keys()
    assert after[fleet[0].id].version(rds_url) != snap.version(rds_url)

    print(f"mesh: {n_services} services, {n_proxies} proxies, {tables} route tables; per proxy {n_res}")
    print(f"load YAML {ms(t1 - t0)}   compile (model + validate) {ms(t2 - t1)}", end="")
    print(f"   recompile after edit {ms(compile2_s)}")
    print(f"{'step':<44}{'memo':>12}{'naive':>14}{'ratio':>9}  target")
    rows = [
        ("first proxy (cold)", first_s, naive_first_s, "< 1500 ms"),
        ("each additional proxy", per_extra, naive_per_proxy, "< 5 ms"),
        (f"one-route change, {n_proxies} proxies", change_s, naive_change, "< 30 ms"),
        (f"  same, {n_proxies} proxies on distinct ports", change_apart_s, naive_change, "(info)"),
    ]
    for label, fast, slow, target in rows:
        print(f"{label:<44}{ms(fast):>12}{ms(slow):>14}{slow / fast:8.0f}x  {target}")
    print(f"memo: {len(builder.memo)} live entries, {builder.memo.hits} hits, {builder.memo.misses} misses")


if __name__ == "__main__":
    main()
