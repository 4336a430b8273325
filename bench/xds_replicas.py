"""`mecha serve` replicas for bench/xds_push_bench.py --replicas N, started by xds.testing.replicas (real
control-plane processes on one PostgreSQL store, a fresh schema per run): their RSS and CPU sampled from
/proc, the fleet's sync state read from each replica's own API (`/api/v1/proxies`, the rows it serves itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from procstat import cpu_seconds, rss_mb

from xds.testing.replicas import Replica

POLL_S = 2.0  # fleet state poll: each costs a replica a JSON answer of its rows (~6 % of its CPU at 1 s)
RSS_SAMPLE_S = 0.2


@dataclass
class Meters:
    """RSS (now and the peak since reset_peaks) and CPU-s of each replica's processes: the CPU of a process
    killed through kill() is kept, so a restarted replica's count goes on."""

    replicas: list[Replica]
    peak_mb: dict[str, float] = field(default_factory=dict)
    cpu_gone: dict[str, float] = field(default_factory=dict)  # CPU-s of its earlier, killed processes

    def rss_mb(self, replica: Replica) -> float:
        with contextlib.suppress(OSError):
            if replica.alive:
                return rss_mb(replica.pid)
        return 0.0

    def cpu_s(self, replica: Replica) -> float:
        now = 0.0
        with contextlib.suppress(OSError):
            if replica.alive:
                now = cpu_seconds(replica.pid)
        return self.cpu_gone.get(replica.name, 0.0) + now

    def sample(self) -> None:
        for r in self.replicas:
            self.peak_mb[r.name] = max(self.peak_mb.get(r.name, 0.0), self.rss_mb(r))

    def reset_peaks(self) -> None:
        self.peak_mb.clear()
        self.sample()

    async def sample_forever(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(RSS_SAMPLE_S)

    async def kill(self, replica: Replica) -> None:
        """SIGKILL: no goodbye to its proxies, its streams end with the TCP connections."""
        self.cpu_gone[replica.name] = self.cpu_s(replica)
        await replica.kill()


async def apply(replica: Replica, name: str, text: str) -> dict[str, Any]:
    """Apply one file (a mesh of 1,000 services takes a while); anything but a 200 ends the run."""
    status, body = await replica.apply(text, name, within=300)
    if status != 200:
        raise RuntimeError(f"apply to {replica.name}: {status} {str(body)[:500]}")
    return dict(body)


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
                kept = {p: row for p, row in last.rows.items() if row.get("replica", r.xds) == r.xds}
                rows.update(kept)
                where[r.name] = len(kept)
            return
        where[r.name] = len(own)
        for row in own:
            rows[row["proxy_id"]] = {**row, "replica": r.xds}

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
