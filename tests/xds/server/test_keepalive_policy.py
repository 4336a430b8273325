"""Every Envoy bootstrap keeps an xDS keepalive, and whatever it pings accepts it.

Envoy's HTTP/2 keepalive on the mecha_xds cluster is how a proxy notices a dead or frozen peer (interval
<= 30 s, timeout <= 10 s). gRPC's default server policy (one ping per 5 min without data, 2 strikes) answered
a 10 s keepalive with GOAWAY too_many_pings every ~40 s; tests/e2e/test_xds_keepalive.py shows it with a real
Envoy. Two paths are checked against the policy they meet:
- direct: Envoy -> the control plane (its KEEPALIVE_SERVER_OPTIONS, replicas' faster replica_keepalive());
- through a local `mecha agent` (compose, Kubernetes, `mecha bootstrap --agent-dir`, `mecha up`): Envoy -> the
  agent's Unix socket (the agent's local gRPC server policy), and the agent's channel -> the control plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from xds.agent.bootstrap import through_agent
from xds.agent.channel import keepalive_options
from xds.agent.xdsproxy import AGENT_SERVER_OPTIONS
from xds.bootstrap import BootstrapParams, render
from xds.controlplane.runtime import replica_keepalive
from xds.server.services import KEEPALIVE_SERVER_OPTIONS

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_BOOTSTRAPS = sorted((ROOT / "compose" / "bootstrap").glob("*/*.yaml"))


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def xds_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == "mecha_xds")


def through_a_pipe(doc: dict[str, Any]) -> bool:
    """True when mecha_xds reaches a local agent over a Unix socket (agent mode)."""
    endpoints = [
        e["endpoint"]["address"]
        for g in xds_cluster(doc)["load_assignment"]["endpoints"]
        for e in g["lb_endpoints"]
    ]
    return all("pipe" in address for address in endpoints)


def xds_keepalive(doc: dict[str, Any]) -> dict[str, Any]:
    (options,) = xds_cluster(doc)["typed_extension_protocol_options"].values()
    http2 = options["explicit_http_config"]["http2_protocol_options"]
    assert "connection_keepalive" in http2, "mecha_xds has no HTTP/2 connection_keepalive"
    return dict(http2["connection_keepalive"])


def bootstraps() -> list[tuple[str, dict[str, Any]]]:
    rendered = render(BootstrapParams(proxy_id="p", xds_port=1, admin_port=2, metadata={"mode": "sidecar"}))
    found = [("envoy/bootstrap.yaml", yaml.safe_load(rendered))]
    # what `mecha bootstrap --agent-dir` and `mecha up` write (compose files below come from the same code)
    found.append(("through_agent(envoy/bootstrap.yaml)", yaml.safe_load(through_agent(rendered, Path("/s")))))
    found += [(str(p.relative_to(ROOT)), yaml.safe_load(p.read_text())) for p in COMPOSE_BOOTSTRAPS]
    found += kubernetes_bootstraps()
    return found


def kubernetes_bootstraps() -> list[tuple[str, dict[str, Any]]]:
    """The Envoy bootstraps the Kubernetes manifests carry in ConfigMaps (envoy.yaml)."""
    found = []
    for manifest in sorted((ROOT / "compose" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and "envoy.yaml" in (doc.get("data") or {}):
                name = f"{manifest.relative_to(ROOT)}:{doc['metadata']['name']}"
                found.append((name, yaml.safe_load(doc["data"]["envoy.yaml"])))
    return found


def server_policy_for(name: str, doc: dict[str, Any]) -> dict[str, int]:
    """The ping policy the bootstrap's mecha_xds cluster meets."""
    if through_a_pipe(doc):
        return dict(AGENT_SERVER_OPTIONS)  # the local agent's gRPC server (xds/agent/xdsproxy.py)
    if "/replicas/" in name:  # replicas on a shared store accept their faster keepalive (runtime.py)
        return dict(replica_keepalive())
    return dict(KEEPALIVE_SERVER_OPTIONS)


def assert_policy_accepts(policy: dict[str, int], interval_ms: float, what: str) -> None:
    # Pings at exactly the minimum are not strikes; Envoy only adds jitter (never shortens the interval) and
    # a gRPC client waits its keepalive time, so half the interval leaves room for a late-then-early pair.
    assert policy["grpc.http2.min_ping_interval_without_data_ms"] <= interval_ms / 2, what
    assert policy["grpc.keepalive_permit_without_calls"] == 1, what
    # Strikes stay bounded: a client pinging far faster than any bootstrap is still cut off.
    assert policy["grpc.http2.max_ping_strikes"] > 0, what


def test_compose_and_kubernetes_bootstraps_are_found() -> None:
    assert len(COMPOSE_BOOTSTRAPS) >= 3
    assert len(kubernetes_bootstraps()) >= 2
    assert sum(through_a_pipe(doc) for _, doc in bootstraps()) >= len(COMPOSE_BOOTSTRAPS)


@pytest.mark.parametrize(("name", "doc"), bootstraps(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_bootstrap_pings_what_it_reaches(name: str, doc: dict[str, Any]) -> None:
    keepalive = xds_keepalive(doc)
    assert seconds(keepalive["interval"]) <= 30, f"{name}: keepalive interval {keepalive['interval']} > 30s"
    assert seconds(keepalive["timeout"]) <= 10, f"{name}: keepalive timeout {keepalive['timeout']} > 10s"


@pytest.mark.parametrize(("name", "doc"), bootstraps(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_ping_policy_it_meets_accepts_the_bootstrap_keepalive(name: str, doc: dict[str, Any]) -> None:
    interval_ms = seconds(xds_keepalive(doc)["interval"]) * 1000
    assert_policy_accepts(server_policy_for(name, doc), interval_ms, name)


@pytest.mark.parametrize(
    ("target", "policy"),
    [
        ("127.0.0.1:15012", dict(KEEPALIVE_SERVER_OPTIONS)),
        ("127.0.0.1:15012,127.0.0.2:15012", dict(replica_keepalive())),
    ],
    ids=["one control plane", "replicas"],
)
def test_the_agent_channel_pings_within_the_control_plane_policy(target: str, policy: dict[str, int]) -> None:
    options = dict(keepalive_options(target))
    interval_ms, timeout_ms = options["grpc.keepalive_time_ms"], options["grpc.keepalive_timeout_ms"]
    assert interval_ms <= 30_000 and timeout_ms <= 10_000, options
    assert_policy_accepts(policy, interval_ms, target)
    # gRPC clients stop pinging after 2 pings without sending data (an idle, synced ADS stream sends none),
    # which would leave a frozen control plane unnoticed: 0 lifts that limit.
    assert options["grpc.http2.max_pings_without_data"] == 0, options
    assert options["grpc.keepalive_permit_without_calls"] == 1, options


def test_the_agent_channel_pings_replicas_as_fast_as_their_bootstraps() -> None:
    from xds.bootstrap import KEEPALIVE, REPLICA_KEEPALIVE

    def ms(pair: tuple[str, str]) -> tuple[int, int]:
        return int(seconds(pair[0]) * 1000), int(seconds(pair[1]) * 1000)

    for target, expected in (("h:1", KEEPALIVE), ("h:1,h:2", REPLICA_KEEPALIVE)):
        options = dict(keepalive_options(target))
        assert (options["grpc.keepalive_time_ms"], options["grpc.keepalive_timeout_ms"]) == ms(expected)
