"""xDS streams stay up under Envoy's HTTP/2 keepalive, and a frozen control plane is still noticed.

Envoy's `mecha_xds` cluster pings the control plane every 10 s (connection_keepalive in envoy/bootstrap.yaml).
gRPC's default server ping policy answered that with GOAWAY too_many_pings about every 40 s; the soak holds
one real Envoy on one stream for MECHA_SOAK_SECONDS (default 600) and fails at the first reconnect, and a
control test shows the same watch fails with gRPC's defaults. A SIGSTOPped control plane must still be
detected by Envoy within the keepalive interval (plus jitter) and timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from xds.cache import SnapshotCache
from xds.server import XdsServer
from xds.server.server import KEEPALIVE_SERVER_OPTIONS
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port
from xds.testing.resources import simple_snapshot

pytestmark = pytest.mark.e2e

SOAK_SECONDS = float(os.environ.get("MECHA_SOAK_SECONDS", "600"))
# gRPC's defaults dropped the stream after ~40 s (3rd ping without data, 2 strikes); 90 s leaves margin.
OLD_POLICY_FAILS_WITHIN = 90.0
POLL_SECONDS = 2.0
# Envoy adds up to 15 % random jitter to each keepalive interval (KeepaliveSettings.interval_jitter default).
KEEPALIVE_JITTER = 0.15
# Slack for polling and a busy 2-core machine on top of interval + jitter + timeout.
DETECTION_SLACK = 3.0

# Counters that move when the xDS connection is lost or replaced, whoever closed it.
RECONNECT_SIGNS = (
    "cluster.mecha_xds.upstream_cx_destroy",
    "cluster.mecha_xds.upstream_cx_close_notify",
    "cluster.mecha_xds.upstream_cx_protocol_error",
    "cluster.mecha_xds.http2.keepalive_timeout",
)

# A bare xDS server in its own process (so it can be SIGSTOPped): serves one snapshot, prints "ready", then
# its log (one "proxy ... connected" line per stream) on stdout.
SERVER_PROGRAM = """
import asyncio, logging, sys
from xds.cache import SnapshotCache
from xds.server import XdsServer
from xds.server.server import KEEPALIVE_SERVER_OPTIONS
from xds.testing.resources import simple_snapshot

async def main() -> None:
    port, proxy_id, listen, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cache = SnapshotCache()
    cache.set_snapshot(proxy_id, simple_snapshot(listen, {"a": backend}, "a"))
    await XdsServer(cache).start("127.0.0.1:" + port)
    print("ready", flush=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def envoy_stats(envoy: EnvoyProcess) -> dict[str, int]:
    """Envoy's xDS-cluster, control-plane and CDS counters and gauges (histograms left out)."""
    pattern = "^(cluster\\.mecha_xds\\.|control_plane\\.|cluster_manager\\.cds\\.)"
    status, body = await envoy.admin_get(f"/stats?filter={pattern}")
    assert status == 200, body
    out: dict[str, int] = {}
    for line in body.splitlines():
        found = re.fullmatch(r"([\w.]+): (\d+)", line.strip())
        if found:
            out[found[1]] = int(found[2])
    return out


def keepalive_of(bootstrap_yaml: str) -> tuple[float, float]:
    """(interval, timeout) in seconds of the mecha_xds cluster's HTTP/2 connection_keepalive."""
    doc = yaml.safe_load(bootstrap_yaml)
    xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "mecha_xds")
    (options,) = xds["typed_extension_protocol_options"].values()
    keepalive = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    return float(keepalive["interval"].rstrip("s")), float(keepalive["timeout"].rstrip("s"))


def reconnect_problem(stats: dict[str, int], server: XdsServer) -> str:
    """Why the single xDS connection/stream is not the one opened at the start, or "" when it is."""
    problems = [f"{name}={stats[name]}" for name in RECONNECT_SIGNS if stats.get(name, 0)]
    if stats.get("cluster.mecha_xds.upstream_cx_total") != 1:
        problems.append(f"upstream_cx_total={stats.get('cluster.mecha_xds.upstream_cx_total')}")
    if stats.get("control_plane.connected_state") != 1:
        problems.append(f"connected_state={stats.get('control_plane.connected_state')}")
    if server.counters.streams_opened != 1:
        problems.append(f"server streams_opened={server.counters.streams_opened}")
    return ", ".join(problems)


async def hold_one_stream(
    tmp_path: Path, seconds: float, keepalive_options: Sequence[tuple[str, int]]
) -> int:
    """One real Envoy on one ADS stream for `seconds`; AssertionError naming the signs at the first
    reconnect. Returns how many times the stats were checked."""
    cache = SnapshotCache()
    server = XdsServer(cache, keepalive_options=keepalive_options)
    xds_port = await server.start("127.0.0.1:0")
    cache.set_snapshot("soak-1", simple_snapshot(free_port(), {"a": free_port()}, "a"))
    bootstrap, _ = bootstrap_for("soak-1", xds_port, {"mode": "sidecar"})
    envoy = EnvoyProcess(bootstrap, tmp_path, name="soak")
    checks = 0
    try:
        await envoy.start(timeout=15)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            stats = await envoy_stats(envoy)
            checks += 1
            problem = reconnect_problem(stats, server)
            elapsed = loop.time() - started
            assert not problem, f"xDS reconnect after {elapsed:.0f} s: {problem}"
            if elapsed >= seconds:
                return checks
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await envoy.stop()
        await server.stop(0)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 120)
async def test_envoy_keeps_one_xds_stream_for_the_soak(tmp_path: Path) -> None:
    checks = await hold_one_stream(tmp_path, SOAK_SECONDS, KEEPALIVE_SERVER_OPTIONS)
    assert checks >= SOAK_SECONDS / (POLL_SECONDS + 5)  # the stats were really watched all along


@pytest.mark.soak
@pytest.mark.timeout(OLD_POLICY_FAILS_WITHIN + 60)
async def test_the_soak_catches_grpc_default_ping_policy(tmp_path: Path) -> None:
    """Control: with gRPC's default server options the same watch fails (GOAWAY too_many_pings)."""
    with pytest.raises(AssertionError, match="xDS reconnect") as failed:
        await hold_one_stream(tmp_path, OLD_POLICY_FAILS_WITHIN, keepalive_options=())
    assert "upstream_cx_close_notify" in str(failed.value) or "upstream_cx_total" in str(failed.value)


async def test_frozen_control_plane_is_detected_then_reconnected(tmp_path: Path) -> None:
    xds_port, listen, backend = free_port(), free_port(), free_port()
    argv = [sys.executable, "-c", SERVER_PROGRAM, str(xds_port), "frozen-1", str(listen), str(backend)]
    server = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    bootstrap, _ = bootstrap_for("frozen-1", xds_port, {"mode": "sidecar"})
    interval, timeout = keepalive_of(bootstrap)
    envoy = EnvoyProcess(bootstrap, tmp_path, name="frozen")
    stopped = False
    server_log = bytearray()
    reader: asyncio.Future[None] | None = None

    async def collect(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            server_log.extend(line)

    try:
        assert server.stdout is not None
        assert await asyncio.wait_for(server.stdout.readline(), 30) == b"ready\n"
        reader = asyncio.ensure_future(collect(server.stdout))
        await envoy.start(timeout=15)
        loop = asyncio.get_running_loop()
        before = await envoy_stats(envoy)
        assert before.get("control_plane.connected_state") == 1, before

        os.kill(server.pid, signal.SIGSTOP)
        stopped = True
        frozen_at = loop.time()
        # The kernel still accepts TCP for a stopped process: only the unanswered HTTP/2 PING shows it.
        deadline = frozen_at + interval * (1 + KEEPALIVE_JITTER) + timeout + DETECTION_SLACK
        while True:
            stats = await envoy_stats(envoy)
            if stats.get("cluster.mecha_xds.http2.keepalive_timeout", 0) >= 1:
                break
            assert loop.time() < deadline, f"frozen control plane not detected by Envoy: {stats}"
            await asyncio.sleep(0.2)
        # Envoy closed the dead connection itself, with the ADS stream on it.
        assert stats["cluster.mecha_xds.upstream_cx_destroy_local_with_active_rq"] >= 1, stats

        # connected_state alone cannot tell: Envoy re-opens the stream into the stopped process's listen
        # backlog at once (the kernel completes the TCP handshake). The resumed server holding an open stream
        # of this proxy (its log: more "connected" than "disconnected" lines) shows it serves Envoy again.
        os.kill(server.pid, signal.SIGCONT)
        stopped = False
        resumed_at = loop.time()
        while True:
            log = server_log.decode()
            open_streams = log.count("proxy frozen-1 connected") - log.count("proxy frozen-1 disconnected")
            stats = await envoy_stats(envoy)
            if open_streams == 1 and stats.get("control_plane.connected_state") == 1:
                break
            assert loop.time() < resumed_at + 20, f"no xDS stream after SIGCONT: {log} {stats}"
            await asyncio.sleep(0.2)
        assert (await envoy.admin_get("/ready"))[0] == 200
        _, listeners = await envoy.admin_get("/config_dump?resource=dynamic_listeners")
        assert "listener_0" in listeners  # the last good config kept serving throughout
    finally:
        if stopped:
            os.kill(server.pid, signal.SIGCONT)
        await envoy.stop()
        if server.returncode is None:
            server.kill()
        await server.wait()
        if reader is not None:
            await reader
