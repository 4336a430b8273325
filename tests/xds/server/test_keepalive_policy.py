"""Every Envoy bootstrap keeps an xDS keepalive, and the xDS server's ping policy accepts it.

Envoy's HTTP/2 keepalive on the mecha_xds cluster is how a proxy notices a dead or frozen control plane
(interval <= 30 s, timeout <= 10 s). gRPC's default server policy (one ping per 5 min without data, 2 strikes)
answered a 10 s keepalive with GOAWAY too_many_pings every ~40 s; tests/e2e/test_xds_keepalive.py shows it
with a real Envoy. This checks the numbers agree in every bootstrap the project ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from xds.bootstrap import BootstrapParams, render
from xds.server.server import KEEPALIVE_SERVER_OPTIONS

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_BOOTSTRAPS = sorted((ROOT / "compose" / "bootstrap").glob("*/*.yaml"))


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def xds_keepalive(doc: dict[str, Any]) -> dict[str, Any]:
    xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "mecha_xds")
    endpoints = [
        e["endpoint"]["address"] for g in xds["load_assignment"]["endpoints"] for e in g["lb_endpoints"]
    ]
    if all("pipe" in address for address in endpoints):
        # Compose with agents: Envoy reaches its local mecha agent over a Unix socket, and the agent's own
        # channel to the control plane keeps alive (xds/agent/channel.py); nothing to check here.
        pytest.skip("mecha_xds reaches a local agent over a Unix socket")
    (options,) = xds["typed_extension_protocol_options"].values()
    return dict(options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"])


def bootstraps() -> list[tuple[str, dict[str, Any]]]:
    rendered = render(BootstrapParams(proxy_id="p", xds_port=1, admin_port=2, metadata={"mode": "sidecar"}))
    found = [("envoy/bootstrap.yaml", yaml.safe_load(rendered))]
    found += [(str(p.relative_to(ROOT)), yaml.safe_load(p.read_text())) for p in COMPOSE_BOOTSTRAPS]
    return found


def test_compose_bootstraps_are_found() -> None:
    assert len(COMPOSE_BOOTSTRAPS) >= 3


@pytest.mark.parametrize(("name", "doc"), bootstraps(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_bootstrap_pings_the_control_plane(name: str, doc: dict[str, Any]) -> None:
    keepalive = xds_keepalive(doc)
    assert seconds(keepalive["interval"]) <= 30, f"{name}: keepalive interval {keepalive['interval']} > 30s"
    assert seconds(keepalive["timeout"]) <= 10, f"{name}: keepalive timeout {keepalive['timeout']} > 10s"


@pytest.mark.parametrize(("name", "doc"), bootstraps(), ids=lambda v: v if isinstance(v, str) else "")
def test_server_ping_policy_accepts_the_bootstrap_keepalive(name: str, doc: dict[str, Any]) -> None:
    options = dict(KEEPALIVE_SERVER_OPTIONS)
    if "/replicas/" in name:  # replicas on a shared store accept their faster keepalive (runtime.py)
        from xds.controlplane.runtime import replica_keepalive

        options = dict(replica_keepalive())
    interval_ms = seconds(xds_keepalive(doc)["interval"]) * 1000
    # Envoy only adds jitter (never shortens the interval); pings at exactly the minimum are not strikes.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= interval_ms / 2, name
    assert options["grpc.keepalive_permit_without_calls"] == 1, name
    # Strikes stay bounded: a client pinging far faster than any bootstrap is still cut off.
    assert options["grpc.http2.max_ping_strikes"] > 0
