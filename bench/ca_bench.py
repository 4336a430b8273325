"""CA benchmark: certificate issuance + SDS packing at 1,000 proxies, and the snapshot rebuild time when every
proxy's certificate rotates at once.

    .venv/bin/python bench/ca_bench.py [--proxies 1000]
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import UTC, datetime, timedelta

from xds.ca import CertificateAuthority, WorkloadCertificates, spiffe_id
from xds.demo.config import demo_config, make_layout
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def sidecars(n: int) -> list[ProxyIdentity]:
    services = ("ratings", "reviews", "productpage")
    ports = itertools.count(20000)
    out = []
    for i in range(n):
        app = services[i % len(services)]
        meta = {
            "mode": "sidecar",
            "outbound_port": next(ports),
            "labels": {"app": app, "version": "v1"},
            "apps": [{"name": app, "app_port": 9000, "inbound_port": next(ports), "labels": {"app": app}}],
        }
        out.append(ProxyIdentity.from_node(f"{app}-{i}", {"mecha": meta}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxies", type=int, default=1000)
    n = parser.parse_args().proxies

    ca = CertificateAuthority()
    started = time.perf_counter()
    for i in range(n):
        ca.issue((spiffe_id("cluster.local", "default", f"sa-{i}"),), timedelta(hours=24))
    issue_s = time.perf_counter() - started
    print(f"issue only:            {n} certs in {issue_s:.2f}s = {n / issue_s:,.0f} certs/s")

    clock = Clock()
    certs = WorkloadCertificates(ca, ttl=timedelta(hours=24), clock=clock)
    started = time.perf_counter()
    for i in range(n):
        certs.secrets(f"p{i}", (spiffe_id("cluster.local", "default", f"sa-{i}"),))
    pack_s = time.perf_counter() - started
    print(f"issue + pack into SDS: {n} secrets in {pack_s:.2f}s = {n / pack_s:,.0f} certs/s")

    layout_ports = itertools.count(40000)
    docs, _ = load_text(demo_config(make_layout("sidecar", lambda _r, _i: next(layout_ports))), "demo.yaml")
    config = compile_documents(docs).config
    assert config is not None
    proxies = sidecars(n)
    builder = SnapshotBuilder(certs=WorkloadCertificates(ca, ttl=timedelta(hours=24), clock=clock))
    started = time.perf_counter()
    builder.build(config, proxies)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    builder.build(config, proxies)
    steady_s = time.perf_counter() - started
    clock.now += timedelta(hours=13)  # past half the lifetime: every certificate is due
    assert builder.certs is not None and len(builder.certs.due()) == n
    started = time.perf_counter()
    snaps = builder.build(config, proxies)
    rotate_s = time.perf_counter() - started
    assert len(snaps) == n and not builder.certs.due()
    print(f"snapshots, first build (issues {n} certs):  {first_s:.2f}s")
    print(f"snapshots, rebuild with nothing due:        {steady_s:.2f}s")
    print(f"snapshots, rotation of all {n} proxies:    {rotate_s:.2f}s ({n / rotate_s:,.0f} proxies/s)")


if __name__ == "__main__":
    main()
