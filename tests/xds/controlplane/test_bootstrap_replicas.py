"""`mecha bootstrap --xds HOST:PORT` repeated: one mecha_xds cluster with one endpoint per replica, which a
real Envoy accepts (--mode validate)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from xds.cli.main import main
from xds.controlplane.runtime import replica_keepalive
from xds.testing.envoy import envoy_binary


def xds_cluster(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == "mecha_xds")


def endpoints(cluster: dict) -> list[tuple[str, int]]:
    lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [
        (
            e["endpoint"]["address"]["socket_address"]["address"],
            e["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for e in lb
    ]


@pytest.mark.parametrize(
    ("addresses", "cluster_type"),
    [
        (["127.0.0.1:15012", "127.0.0.2:15112", "[::1]:15212"], "STATIC"),
        (["cp-a:15012", "cp-b:15012"], "STRICT_DNS"),
    ],
)
def test_several_xds_endpoints_in_one_cluster(
    tmp_path: Path, addresses: list[str], cluster_type: str
) -> None:
    out = tmp_path / "bootstrap.yaml"
    argv = ["bootstrap", "--id", "p1", "-o", str(out)]
    for address in addresses:
        argv += ["--xds", address]
    assert main(argv) == 0
    cluster = xds_cluster(out)
    assert cluster["type"] == cluster_type
    parsed = [(a.rpartition(":")[0].strip("[]"), int(a.rpartition(":")[2])) for a in addresses]
    assert endpoints(cluster) == parsed
    check = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(out), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr[-2000:]


def test_without_xds_the_single_endpoint_stays(tmp_path: Path) -> None:
    out = tmp_path / "bootstrap.yaml"
    assert (
        main(["bootstrap", "--id", "p1", "--xds-host", "10.0.0.9", "--xds-port", "1234", "-o", str(out)]) == 0
    )
    assert endpoints(xds_cluster(out)) == [("10.0.0.9", 1234)]


@pytest.mark.parametrize("bad", ["nohost", "host:", "host:70000", ":15012"])
def test_bad_xds_address_names_the_value(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--id", "p1", "--xds", bad]) == 2
    assert f"--xds {bad!r}: expected HOST:PORT" in capsys.readouterr().err


def test_replica_keepalive_leaves_a_frozen_replica_fast_and_replicas_accept_it(tmp_path: Path) -> None:
    out = tmp_path / "bootstrap.yaml"
    assert (
        main(["bootstrap", "--id", "p1", "--xds", "127.0.0.1:1", "--xds", "127.0.0.1:2", "-o", str(out)]) == 0
    )
    (options,) = xds_cluster(out)["typed_extension_protocol_options"].values()
    keepalive = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    interval, timeout = float(keepalive["interval"].rstrip("s")), float(keepalive["timeout"].rstrip("s"))
    assert interval * 1.15 + timeout < 4  # a frozen replica is noticed (Envoy's 15 % jitter included)
    server = dict(replica_keepalive())
    # pings at the bootstrap's interval are never strikes on a replica (Envoy only adds jitter)
    assert server["grpc.http2.min_ping_interval_without_data_ms"] <= interval * 1000 / 2
    assert server["grpc.http2.max_ping_strikes"] == 2  # a ping flood is still cut off
