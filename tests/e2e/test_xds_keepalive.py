"""xDS streams stay up under Envoy's HTTP/2 keepalive, and a frozen control plane is still noticed.

Envoy's `mecha_xds` cluster pings the control plane every 10 s (connection_keepalive in envoy/bootstrap.yaml).
gRPC's default server ping policy answered that with GOAWAY too_many_pings about every 40 s; the soak holds
one real Envoy on one stream for MECHA_SOAK_SECONDS (default 600) and fails at the first reconnect, and a
control test shows the same watch fails with gRPC's defaults. A SIGSTOPped control plane must still be
detected by Envoy within the keepalive interval (plus jitter) and timeout.

Through a local `mecha agent` (Envoy -> Unix socket -> agent -> TLS -> `mecha serve`) the same holds: the
soak runs a second Envoy behind a real agent beside the direct one (CI pays the soak once), and a SIGSTOPped
control plane is noticed by the agent's channel keepalive, which resets Envoy's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from xds.agent.agent import XDS_SOCKET
from xds.agent.bootstrap import through_agent
from xds.agent.channel import keepalive_options as agent_keepalive_options
from xds.cache import SnapshotCache
from xds.server import XdsServer
from xds.server.services import KEEPALIVE_SERVER_OPTIONS
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port
from xds.testing.resources import simple_snapshot

sys.path.insert(0, str(Path(__file__).parents[1] / "xds" / "agent"))  # agent_helpers: a real `mecha serve`
from agent_helpers import SIDECAR_META, ServedControlPlane, served_control_plane

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
from xds.agent.agent import XDS_SOCKET
from xds.agent.bootstrap import through_agent
from xds.agent.channel import keepalive_options as agent_keepalive_options
from xds.cache import SnapshotCache
from xds.server import XdsServer
from xds.server.services import KEEPALIVE_SERVER_OPTIONS
from xds.testing.resources import simple_snapshot

async def main() -> None:
    port, proxy_id, listen, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cache = SnapshotCache()
    cache.set_snapshot(proxy_id, simple_snapshot(listen, {"a": backend}, "a"))
    if sys.argv[5:] == ["replica"]:  # a replica on a shared store: accepts the faster replica keepalive
        from xds.controlplane.runtime import replica_keepalive

        await XdsServer(cache, keepalive_options=replica_keepalive()).start("127.0.0.1:" + port)
    else:
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


AGENT_PROXY = "reviews-v1"
# The agent's log line when its upstream stream ends (xds/agent/xdsproxy.py): Envoy's stream is ended with it.
AGENT_STREAM_ENDED = "xDS stream to the control plane ended"


@dataclass
class AgentPath:
    """A real Envoy whose bootstrap reaches only a real `mecha agent`, which dials a real `mecha serve`."""

    control_plane: ServedControlPlane
    envoy: EnvoyProcess
    agent_log: Path

    @property
    def agent_keepalive(self) -> tuple[float, float]:
        """(interval, timeout) in seconds of the agent's channel to the control plane."""
        options = dict(agent_keepalive_options(self.control_plane.xds))
        return options["grpc.keepalive_time_ms"] / 1000, options["grpc.keepalive_timeout_ms"] / 1000

    def stream_ends(self) -> list[str]:
        return [line for line in self.agent_log.read_text().splitlines() if AGENT_STREAM_ENDED in line]


@contextlib.asynccontextmanager
async def envoy_through_agent(folder: Path) -> AsyncIterator[AgentPath]:
    """Yields once Envoy holds an ADS stream through the agent and has taken a first CDS response."""
    async with served_control_plane(folder / "cp", {}) as cp:
        sockets, agent_log = folder / "agent", folder / "agent.log"
        credential = cp.credential(AGENT_PROXY)
        argv = [sys.executable, "-m", "xds.cli", "agent", "--credential", str(credential), "--control-plane",
                cp.xds, "--root-cert", str(cp.root), "--socket-dir", str(sockets)]  # fmt: skip
        with agent_log.open("wb") as out:
            agent = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
        rendered, _ = bootstrap_for(AGENT_PROXY, cp.xds_port, SIDECAR_META)
        envoy = EnvoyProcess(through_agent(rendered, sockets), folder, name="through-agent")
        path = AgentPath(cp, envoy, agent_log)
        try:
            for _ in range(300):
                if (sockets / XDS_SOCKET).exists():
                    break
                assert agent.returncode is None, agent_log.read_text()
                await asyncio.sleep(0.1)
            await envoy.start(timeout=30)  # ready after its initial fetch timeout at the latest
            for _ in range(300):
                stats = await envoy_stats(envoy)
                if stats.get("cluster_manager.cds.update_success", 0) >= 1:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"no config through the agent: {stats}\n{agent_log.read_text()[-2000:]}")
            yield path
        finally:
            await envoy.stop()
            if agent.returncode is None:
                agent.terminate()
            await agent.wait()


async def apply_service_entry(cp: ServedControlPlane, host: str) -> None:
    """A new ServiceEntry through the control plane's API (operator token): one more cluster for Envoy."""
    text = (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\nspec:\n"
            f"  hosts: [{host}]\n  resolution: STATIC\n  ports: [{{number: 8080, name: http}}]\n"
            f"  endpoints: [{{address: 127.0.0.1}}]\n")  # fmt: skip
    token = (cp.state / "api-token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=20)) as http:
        body = {"files": [{"name": f"{host}.yaml", "text": text}]}
        async with http.post(f"http://127.0.0.1:{cp.api_port}/api/v1/apply", json=body) as resp:
            assert resp.status == 200, await resp.text()


def agent_path_problem(stats: dict[str, int], path: AgentPath) -> str:
    """Why the Envoy behind the agent no longer holds the one connection and one ADS stream it opened."""
    problems = [f"{name}={stats[name]}" for name in RECONNECT_SIGNS if stats.get(name, 0)]
    for name in ("cluster.mecha_xds.upstream_cx_total", "cluster.mecha_xds.upstream_rq_total"):
        if stats.get(name) != 1:  # one connection to the agent, one ADS stream on it
            problems.append(f"{name}={stats.get(name)}")
    if stats.get("control_plane.connected_state") != 1:
        problems.append(f"connected_state={stats.get('control_plane.connected_state')}")
    problems += [f"agent: {line}" for line in path.stream_ends()]
    return ", ".join(problems)


async def hold_one_stream(
    tmp_path: Path, seconds: float, keepalive_options: Sequence[tuple[str, int]], with_agent: bool = False
) -> int:
    """One real Envoy on one ADS stream for `seconds` (with_agent: and a second one behind a real agent,
    watched together); AssertionError naming the signs at the first reconnect. Returns how many times the
    stats were checked."""
    cache = SnapshotCache()
    server = XdsServer(cache, keepalive_options=keepalive_options)
    xds_port = await server.start("127.0.0.1:0")
    cache.set_snapshot("soak-1", simple_snapshot(free_port(), {"a": free_port()}, "a"))
    bootstrap, _ = bootstrap_for("soak-1", xds_port, {"mode": "sidecar"})
    envoy = EnvoyProcess(bootstrap, tmp_path, name="soak")
    checks = 0
    try:
        async with contextlib.AsyncExitStack() as stack:
            agent_path = None
            if with_agent:
                agent_path = await stack.enter_async_context(envoy_through_agent(tmp_path / "through-agent"))
            await envoy.start(timeout=15)
            loop = asyncio.get_running_loop()
            started = loop.time()
            while True:
                stats = await envoy_stats(envoy)
                checks += 1
                problem = reconnect_problem(stats, server)
                elapsed = loop.time() - started
                assert not problem, f"xDS reconnect after {elapsed:.0f} s: {problem}"
                if agent_path is not None:
                    problem = agent_path_problem(await envoy_stats(agent_path.envoy), agent_path)
                    assert not problem, f"xDS reconnect through the agent after {elapsed:.0f} s: {problem}"
                if elapsed >= seconds:
                    return checks
                await asyncio.sleep(POLL_SECONDS)
    finally:
        await envoy.stop()
        await server.stop(0)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 120)
async def test_envoy_keeps_one_xds_stream_for_the_soak(tmp_path: Path) -> None:
    """Both paths at once: Envoy -> control plane, and Envoy -> agent -> `mecha serve`."""
    checks = await hold_one_stream(tmp_path, SOAK_SECONDS, KEEPALIVE_SERVER_OPTIONS, with_agent=True)
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


async def test_frozen_control_plane_behind_the_agent_resets_envoys_stream(tmp_path: Path) -> None:
    """The agent's channel keepalive notices a SIGSTOPped `mecha serve` and ends Envoy's stream (Envoy's own
    keepalive only reaches the live agent); after SIGCONT Envoy is served again through the agent."""
    async with envoy_through_agent(tmp_path) as path:
        envoy, cp = path.envoy, path.control_plane
        interval, timeout = path.agent_keepalive
        before = await envoy_stats(envoy)
        assert not agent_path_problem(before, path), agent_path_problem(before, path)
        loop = asyncio.get_running_loop()
        os.kill(cp.pid, signal.SIGSTOP)
        try:
            frozen_at = loop.time()
            deadline = frozen_at + interval * (1 + KEEPALIVE_JITTER) + timeout + DETECTION_SLACK
            while True:
                stats = await envoy_stats(envoy)
                if path.stream_ends() and stats.get("cluster.mecha_xds.upstream_rq_total", 0) >= 2:
                    break
                assert loop.time() < deadline, (
                    f"frozen control plane unnoticed through the agent within {deadline - frozen_at:.0f} s: "
                    f"{stats}\nagent log:\n{path.agent_log.read_text()[-2000:]}"
                )
                await asyncio.sleep(0.2)
            assert "UNAVAILABLE" in path.stream_ends()[0], path.stream_ends()
            # Only the stream was reset: Envoy's connection to the live agent stays, its pings answered.
            assert stats["cluster.mecha_xds.upstream_cx_total"] == 1, stats
            assert stats.get("cluster.mecha_xds.http2.keepalive_timeout", 0) == 0, stats
            updates = stats.get("cluster_manager.cds.update_success", 0)
        finally:
            os.kill(cp.pid, signal.SIGCONT)
        resumed_at = loop.time()
        # Envoy is served again through the agent: a change made after SIGCONT reaches it.
        await apply_service_entry(cp, "after-sigcont")
        while True:
            stats = await envoy_stats(envoy)
            _, clusters = await envoy.admin_get("/clusters")
            if stats.get("cluster_manager.cds.update_success", 0) > updates and "after-sigcont" in clusters:
                break
            assert loop.time() < resumed_at + 60, (
                f"no config through the agent after SIGCONT: {stats}\n{path.agent_log.read_text()[-2000:]}"
            )
            await asyncio.sleep(0.2)
        assert stats.get("control_plane.connected_state") == 1, stats
        assert stats["cluster.mecha_xds.upstream_cx_total"] == 1, stats


@dataclass
class BareServer:
    """SERVER_PROGRAM in its own process; its log collected."""

    proc: asyncio.subprocess.Process
    log: bytearray
    reader: asyncio.Future[None]

    def open_streams(self, proxy_id: str) -> int:
        text = self.log.decode()
        return text.count(f"proxy {proxy_id} connected") - text.count(f"proxy {proxy_id} disconnected")


@contextlib.asynccontextmanager
async def bare_server(
    port: int, proxy_id: str, listen: int, backend: int, *extra: str
) -> AsyncIterator[BareServer]:
    argv = [sys.executable, "-c", SERVER_PROGRAM, str(port), proxy_id, str(listen), str(backend), *extra]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    assert proc.stdout is not None
    log = bytearray()

    async def collect(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            log.extend(line)

    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        server = BareServer(proc, log, asyncio.ensure_future(collect(proc.stdout)))
        yield server
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        await proc.wait()


async def test_agent_leaves_a_frozen_replica_for_the_other(tmp_path: Path) -> None:
    """The agent dialing two replicas (one channel over both addresses, replica keepalive): the replica that
    holds Envoy's stream is SIGSTOPped; the agent notices within its keepalive, ends Envoy's stream, and the
    stream Envoy reopens reaches the other replica."""
    from xds.agent.channel import CredentialSource, open_channel
    from xds.agent.xdsproxy import XdsProxy

    proxy_id, listen, backend = "replicated-1", free_port(), free_port()
    ports = [free_port(), free_port()]
    target = ",".join(f"127.0.0.1:{port}" for port in ports)
    options = dict(agent_keepalive_options(target))
    interval, timeout = options["grpc.keepalive_time_ms"] / 1000, options["grpc.keepalive_timeout_ms"] / 1000
    credential = tmp_path / "credential.jwt"
    credential.write_text("unchecked-by-bare-servers\n")
    sockets = tmp_path / "agent"
    sockets.mkdir(mode=0o700)
    async with contextlib.AsyncExitStack() as stack:
        fleet = [
            await stack.enter_async_context(bare_server(port, proxy_id, listen, backend, "replica"))
            for port in ports
        ]
        channel = open_channel(target, None)
        stack.push_async_callback(channel.close)
        proxy = XdsProxy(channel, CredentialSource(credential), proxy_id)
        await proxy.start(str(sockets / XDS_SOCKET))
        stack.push_async_callback(proxy.stop)
        rendered, _ = bootstrap_for(proxy_id, ports[0], {"mode": "sidecar"})
        envoy = EnvoyProcess(through_agent(rendered, sockets), tmp_path, name="replicated")
        await envoy.start(timeout=30)
        stack.push_async_callback(envoy.stop)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not any(server.open_streams(proxy_id) == 1 for server in fleet):
            assert loop.time() < deadline, [server.log.decode() for server in fleet]
            await asyncio.sleep(0.1)
        used = next(server for server in fleet if server.open_streams(proxy_id) == 1)
        other = next(server for server in fleet if server is not used)

        os.kill(used.proc.pid, signal.SIGSTOP)
        frozen_at = loop.time()
        # the keepalive, then Envoy's retry backoff (up to ~1 s at first) and the other replica's handshake
        deadline = frozen_at + interval * (1 + KEEPALIVE_JITTER) + timeout + DETECTION_SLACK + 2
        while other.open_streams(proxy_id) != 1:
            assert loop.time() < deadline, f"no stream on the other replica: {other.log.decode()}"
            await asyncio.sleep(0.1)
        stats = await envoy_stats(envoy)
        assert stats["cluster.mecha_xds.upstream_rq_total"] >= 2, stats  # Envoy's stream was reset
        assert stats["cluster.mecha_xds.upstream_cx_total"] == 1, stats  # on its one connection to the agent
        assert stats.get("control_plane.connected_state") == 1, stats
