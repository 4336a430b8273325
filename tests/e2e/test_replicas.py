"""Two `mecha serve` replicas on one PostgreSQL store, real Envoys on one xDS cluster with both endpoints.

- a change applied to replica A reaches an Envoy connected to replica B;
- SIGKILL, and separately SIGSTOP, of the replica an Envoy is connected to: a change applied to the other one
  reaches the Envoy within 5 s while traffic keeps flowing (200 req/s, no failed request); the killed replica
  restarted catches up from the store;
- PostgreSQL restarted under running replicas (a private server started with initdb/pg_ctl on a free port):
  they keep serving the last config, then accept changes again without a restart of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import backend_available

from xds.bootstrap import BootstrapParams, render
from xds.cli.main import main as mecha
from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.replicas import Replica, fresh_schema, running_replicas

pytestmark = [pytest.mark.e2e, pytest.mark.backend]

PG_HOST, PG_PORT = "127.0.0.1", int(os.environ.get("MECHA_TEST_PG_PORT", "5432"))
PG_BASE = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
PG_BIN = Path("/usr/lib/postgresql") / "15" / "bin"  # Debian's postgresql package (initdb, pg_ctl)
RATE = 200  # requests per second through the Envoy while replicas fail
CONFIG = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1, ports: {http: APP_PORT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web}}]
    headers: {response: {set: {x-config: "MARK"}}}
"""


@contextlib.asynccontextmanager
async def shared_schema() -> AsyncIterator[str]:
    backend_available(PG_HOST, PG_PORT, "PostgreSQL")
    async with fresh_schema(PG_BASE, prefix="e2e_") as store:
        yield store


@dataclass
class App:
    port: int
    runner: web.AppRunner


@contextlib.asynccontextmanager
async def app() -> AsyncIterator[App]:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    server = web.Application()
    server.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield App(port, runner)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def envoy(tmp: Path, proxy_id: str, xds: list[Replica]) -> AsyncIterator[tuple[EnvoyProcess, int]]:
    outbound = free_port()
    metadata = {"mode": "sidecar", "namespace": "default", "outbound_port": outbound, "apps": []}
    params = BootstrapParams(
        proxy_id=proxy_id,
        xds_port=xds[0].xds_port,
        admin_port=free_port(),
        metadata=metadata,
        xds_addresses=tuple(("127.0.0.1", r.xds_port) for r in xds),
        initial_fetch_timeout_s=1.0,
    )
    proc = EnvoyProcess(render(params), tmp / proxy_id, name=proxy_id)
    await proc.start()
    try:
        yield proc, outbound
    finally:
        await proc.stop()


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return mecha(list(argv))

    return await asyncio.to_thread(run), out.getvalue()


def config(app_port: int, mark: str) -> str:
    return CONFIG.replace("APP_PORT", str(app_port)).replace("MARK", mark)


async def mark_seen(outbound: int) -> str:
    """The x-config header the Envoy's route adds now ('' when the route is not there)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.get(f"http://127.0.0.1:{outbound}/", headers={"Host": "web:8080"}) as resp:
                return resp.headers.get("x-config", "") if resp.status == 200 else ""
    return ""


async def until_mark(outbound: int, mark: str, within: float) -> float:
    """Seconds until the Envoy answers with `mark`; fails after `within`."""
    started = time.monotonic()
    while await mark_seen(outbound) != mark:
        assert time.monotonic() - started < within, f"the Envoy did not get config {mark!r} within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@dataclass
class Load:
    """RATE req/s through the Envoy; every answer that is not a 200 (or no answer) is a failure."""

    outbound: int
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        interval = 1 / RATE
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.create_task(self._one(http))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*tasks)

    async def _one(self, http: aiohttp.ClientSession) -> None:
        try:
            async with http.get(f"http://127.0.0.1:{self.outbound}/", headers={"Host": "web:8080"}) as resp:
                await resp.read()
                if resp.status != 200:
                    self.failures.append(f"HTTP {resp.status}")
                mark = resp.headers.get("x-config", "")
                self.marks[mark] = self.marks.get(mark, 0) + 1
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failures.append(repr(exc))


@contextlib.asynccontextmanager
async def load(outbound: int) -> AsyncIterator[Load]:
    running = Load(outbound)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await task


async def until_version(replica: Replica, version: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (seen := await replica.version()) != version:
        assert time.monotonic() < deadline, f"{replica.name} stays at version {seen}, not {version}"
        await asyncio.sleep(0.1)


async def connected_to(proxy_id: str, fleet: list[Replica], within: float = 20) -> Replica:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for replica in fleet:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if await replica.holds(proxy_id):
                    return replica
        await asyncio.sleep(0.1)
    raise AssertionError(f"{proxy_id} is connected to no replica")


# ---- tests -----------------------------------------------------------------------------------------------
async def test_change_applied_on_a_reaches_an_envoy_on_b(tmp_path: Path) -> None:
    async with shared_schema() as store, running_replicas(store, tmp_path) as (a, b), app() as web_app:
        async with envoy(tmp_path, "only-b", [b]) as (_proc, outbound):
            assert (await a.apply(config(web_app.port, "1")))[0] == 200
            await until_mark(outbound, "1", within=10)
            assert await b.version() == await a.version() == 1
            # any replica answers for the fleet: A lists the stream B holds (from B's heartbeat)
            deadline = time.monotonic() + 10
            while not (
                rows := [
                    p for p in (await a.get("/api/v1/proxies"))[1]["proxies"] if p["proxy_id"] == "only-b"
                ]
            ):
                assert time.monotonic() < deadline, "replica a never listed the proxy connected to b"
                await asyncio.sleep(0.2)
            assert [r["replica"] for r in rows] == [f"127.0.0.1:{b.xds_port}"]
            assert rows[0]["types"]["LDS"]["state"] == "SYNCED", rows
            code, out = await cli("proxy-status", "--server", a.api, "--token", a.token)
            assert code == 0, out
            header, line = out.splitlines()[:2]
            assert header.split()[-1] == "REPLICA" and line.split()[0] == "only-b"
            assert line.split()[-1] == f"127.0.0.1:{b.xds_port}"


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
async def test_the_replica_an_envoy_uses_fails_and_a_change_on_the_other_arrives_within_5s(
    tmp_path: Path, how: str
) -> None:
    async with shared_schema() as store, running_replicas(store, tmp_path) as fleet, app() as web_app:
        await fleet[0].apply(config(web_app.port, "1"))
        async with envoy(tmp_path, "client", fleet) as (_proc, outbound):
            await until_mark(outbound, "1", within=15)
            used = await connected_to("client", fleet)
            other = next(r for r in fleet if r is not used)
            async with load(outbound) as traffic:
                await asyncio.sleep(1)  # steady traffic before the failure
                used.signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGSTOP)
                status, outcome = await other.apply(config(web_app.port, "2"))
                assert status == 200 and outcome["version"] == 2, outcome
                took = await until_mark(outbound, "2", within=5)
                await asyncio.sleep(1)  # and traffic keeps flowing after the switch
            assert traffic.sent >= RATE * 2 and traffic.failures == [], (traffic.sent, traffic.failures[:5])
            assert await other.holds("client")
            print(f"{how}: the change reached the Envoy in {took:.2f}s; {traffic.sent} requests, 0 failed")
            if how == "SIGSTOP":
                used.signal(signal.SIGCONT)
            else:
                assert used.proc is not None
                await used.proc.wait()
                await used.start()  # restarted: it catches up from the store
            await until_version(used, 2, within=10)
            assert (await used.get("/api/v1/config"))[1]["documents"] == (await other.get("/api/v1/config"))[
                1
            ]["documents"]


# ---- PostgreSQL restarted under the replicas --------------------------------------------------------------
@contextlib.contextmanager
def private_postgres() -> Iterator[tuple[str, Path]]:
    """A throwaway PostgreSQL in a temp folder on a free port (never the machine's shared server)."""
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_BIN}/initdb missing (CI=true: the postgresql package is required)")
        pytest.skip(f"{PG_BIN}/initdb missing (Debian's postgresql package)")
    folder = Path(tempfile.mkdtemp(prefix="mecha-pg-"))
    data, port = folder / "data", free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    run = lambda *argv: subprocess.run([*as_postgres, *argv], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    ctl = [
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
    ]  # fmt: skip
    run(*ctl, "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", folder
    finally:
        subprocess.run([*as_postgres, *ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


async def test_postgres_restarted_under_running_replicas(tmp_path: Path) -> None:
    with private_postgres() as (store, folder):
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w"]
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        port = store.rsplit(":", 1)[1].split("/")[0]
        options = ["-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"]
        async with running_replicas(store, tmp_path) as (a, b), app() as web_app:
            await a.apply(config(web_app.port, "1"))
            async with envoy(tmp_path, "client", [a, b]) as (_proc, outbound):
                await until_mark(outbound, "1", within=15)
                await asyncio.to_thread(
                    subprocess.run, [*as_postgres, *pg_ctl, "-m", "fast", "stop"], check=True, timeout=60
                )
                # the database is down: the last config keeps serving; a change is refused (503), not lost
                status, outcome = await b.apply(config(web_app.port, "2"))
                assert status == 503 and not outcome["accepted"], outcome
                async with load(outbound) as traffic:
                    await asyncio.sleep(2)
                assert traffic.failures == [] and set(traffic.marks) == {"1"}
                assert (await a.get("/api/v1/config"))[1]["version"] == 1
                await asyncio.to_thread(
                    subprocess.run, [*as_postgres, *pg_ctl, *options, "start"], check=True, timeout=60
                )
                # back: the same processes accept changes again (the pool reconnects) and follow each other
                deadline = time.monotonic() + 30
                while (status := (await b.apply(config(web_app.port, "2")))[0]) != 200:
                    assert time.monotonic() < deadline, f"b never accepted a change again: {b.tail()}"
                    await asyncio.sleep(0.5)
                await until_mark(outbound, "2", within=10)
                await until_version(a, 2, within=15)
                assert a.proc is not None and a.proc.returncode is None
                assert b.proc is not None and b.proc.returncode is None
