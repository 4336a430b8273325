"""`mecha serve` replicas for bench/xds_push_bench.py --replicas N: real control-plane processes on one
PostgreSQL store (a fresh schema per run), their RSS and CPU sampled from /proc, the fleet's sync state read
from each replica's own API (`/api/v1/proxies`, the rows it serves itself).

A replica keeps its ports across a restart (SIGKILL, then the same command): proxies dial the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from xds.controlplane.auth import auth_headers
from xds.testing.envoy import free_port

POLL_S = 2.0  # fleet state poll: each costs a replica a JSON answer of its rows (~6 % of its CPU at 1 s)
RSS_SAMPLE_S = 0.2


def proc_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@dataclass
class Replica:
    name: str
    store: str
    state_dir: Path  # shared by all replicas: one CA, one credential key, one API token (as compose does)
    log: Path
    env: dict[str, str]
    api_port: int = field(default_factory=free_port)
    xds_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    peak_mb: float = 0.0  # highest RSS seen since reset_peak()
    cpu_before: float = 0.0  # CPU-s of earlier processes of this replica (before a restart)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, ready_within: float = 120) -> float:
        """Start `mecha serve` and wait for /readyz: returns the seconds it took."""
        argv = [
            sys.executable, "-m", "xds.cli", "serve", "--port", str(self.api_port),
            "--xds-port", str(self.xds_port), "--state-dir", str(self.state_dir), "--store", self.store,
        ]  # fmt: skip
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, **self.env},
            )  # fmt: skip
        while time.monotonic() - started < ready_within:
            if self.proc.returncode is not None:
                raise RuntimeError(f"replica {self.name} exited: {self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if (await self.get("/readyz", within=2))[0] == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"replica {self.name} not ready after {ready_within} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def cpu_s(self) -> float:
        """CPU-s of this replica's processes so far (a killed one's total is kept)."""
        return self.cpu_before + (proc_cpu_s(self.proc.pid) if self.alive and self.proc else 0.0)

    def sample(self) -> float:
        rss = proc_rss_mb(self.proc.pid) if self.alive and self.proc else 0.0
        self.peak_mb = max(self.peak_mb, rss)
        return rss

    def reset_peak(self) -> None:
        self.peak_mb = 0.0
        self.sample()

    async def kill(self) -> None:
        """SIGKILL: no goodbye to its proxies, its streams end with the TCP connections."""
        if self.proc is not None and self.proc.returncode is None:
            self.cpu_before += proc_cpu_s(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def get(self, path: str, within: float = 10) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=within)
        async with aiohttp.ClientSession(timeout=timeout, headers=auth_headers(self.state_dir)) as http:
            async with http.get(self.api + path) as resp:
                return resp.status, await resp.json()

    async def apply(self, name: str, text: str) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout, headers=auth_headers(self.state_dir)) as http:
            files = {"files": [{"name": name, "text": text}]}
            async with http.post(self.api + "/api/v1/apply", json=files) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"apply to {self.name}: {resp.status} {str(body)[:500]}")
                return dict(body)

    async def version(self) -> int:
        return int((await self.get("/api/v1/config"))[1]["version"])

    async def own_rows(self) -> list[dict[str, Any]]:
        """The proxies this replica serves itself (not those it knows from other replicas' heartbeats)."""
        status, body = await self.get("/api/v1/proxies", within=10)
        if status != 200:
            return []
        here = f"127.0.0.1:{self.xds_port}"
        return [r for r in body["proxies"] if r.get("replica", here) == here]


@contextlib.asynccontextmanager
async def pg_schema(base: str) -> AsyncIterator[str]:
    """A store URL on a fresh schema of `base` (postgresql://...), dropped afterwards."""
    import asyncpg

    schema = "bench_" + uuid.uuid4().hex[:12]
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        conn = await asyncpg.connect(base)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def sample_forever(replicas: list[Replica]) -> None:
    while True:
        for r in replicas:
            r.sample()
        await asyncio.sleep(RSS_SAMPLE_S)


@dataclass
class FleetState:
    """What the replicas' APIs said at one poll."""

    at: float  # seconds since the measurement started
    rows: dict[str, dict[str, Any]]  # proxy id -> its row (state, replica)
    where: dict[str, int]  # replica name -> proxies it serves
    unanswered: list[str] = field(default_factory=list)  # live replicas whose API did not answer in time

    def synced(self) -> set[str]:
        return {pid for pid, row in self.rows.items() if row.get("state") == "SYNCED"}

    def states(self, fleet: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for pid in fleet:
            state = self.rows.get(pid, {}).get("state", "NOT CONNECTED")
            out[state] = out.get(state, 0) + 1
        return out


async def poll_fleet(replicas: list[Replica], started: float, last: FleetState | None = None) -> FleetState:
    """One poll of every live replica; a replica that does not answer keeps its rows of `last`."""
    rows: dict[str, dict[str, Any]] = {}
    where: dict[str, int] = {}
    unanswered: list[str] = []

    async def one(r: Replica) -> None:
        try:
            own = await r.own_rows()
        except (aiohttp.ClientError, OSError, TimeoutError, KeyError):
            unanswered.append(r.name)
            if last is not None:
                here = f"127.0.0.1:{r.xds_port}"
                kept = {p: row for p, row in last.rows.items() if row.get("replica", here) == here}
                rows.update(kept)
                where[r.name] = len(kept)
            return
        where[r.name] = len(own)
        for row in own:
            rows[row["proxy_id"]] = {**row, "replica": f"127.0.0.1:{r.xds_port}"}

    await asyncio.gather(*(one(r) for r in replicas if r.alive))
    return FleetState(time.monotonic() - started, rows, where, unanswered)


async def wait_fleet_synced(
    replicas: list[Replica],
    fleet: list[str],
    within: float,
    started: float | None = None,
) -> tuple[dict[str, float], FleetState]:
    """Poll until every proxy of `fleet` is SYNCED on some replica: (seconds each was first seen SYNCED,
    the last poll). Past `within` seconds the last poll says which proxies are stuck in which state."""
    began = time.monotonic() if started is None else started
    first: dict[str, float] = {}
    wanted = set(fleet)
    state = FleetState(0.0, {}, {})
    while time.monotonic() - began < within:
        state = await poll_fleet(replicas, began, state)
        for pid in state.synced() & wanted:
            first.setdefault(pid, state.at)
        if wanted <= state.synced():
            return first, state
        await asyncio.sleep(POLL_S)
    return first, state
