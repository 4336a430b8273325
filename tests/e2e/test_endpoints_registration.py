"""Endpoints that follow the workloads, with real Envoys (issue #15): instances of `details` register through
their proxy's credential (no WorkloadEntry written by anyone), are scaled 1 -> 3 -> 1 under 200 req/s through
productpage's proxy, one reports itself unhealthy and back, the removed ones drain: 0 failed requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from e2e_mesh import Mesh, demo_mesh, through_agent

from xds.runner.procs import drain_listeners
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port
from xds.testing.registration import group_and_service

pytestmark = [pytest.mark.e2e]

CONFIG = group_and_service("details")  # WorkloadGroup + ServiceEntry
RATE = 200  # requests per second through the mesh


@dataclass
class Instance:
    name: str
    runner: web.AppRunner
    envoy: EnvoyProcess
    credential: Path
    ready_at: float = 0.0


@dataclass
class Load:
    """Requests at RATE per second through productpage's proxy; who answered, and every failure."""

    mesh: Mesh
    answered: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task[None]] = set()
        tick = 1.0 / RATE
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(self._one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def _one(self) -> None:
        try:
            status, body = await self.mesh.call("details", "/details")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures.append(repr(exc))
            return
        if status != 200 or not isinstance(body, dict):
            self.failures.append(f"HTTP {status}: {str(body)[:120]}")
            return
        self.answered.append((time.monotonic(), str(body["instance"])))

    def by_instance(self, since: float) -> Counter[str]:
        return Counter(who for at, who in self.answered if at >= since)


async def start_instance(mesh: Mesh, name: str, workdir: Path) -> Instance:
    async def details(_request: web.Request) -> web.Response:
        return web.json_response({"instance": name})

    app = web.Application()
    app.router.add_get("/details", details)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    app_port, inbound = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    labels = {"app": "details", "version": "v1"}
    meta = {
        "mode": "sidecar",
        "namespace": "default",
        "address": "127.0.0.1",
        "workload_group": "details",  # the credential the agent gets allows exactly this group and address
        "labels": labels,
        "apps": [{"name": "details", "app_port": app_port, "inbound_port": inbound, "labels": labels}],
    }
    stack = mesh.stack
    text, _admin = bootstrap_for(name, stack.o.xds_port, meta)
    text = await through_agent(stack, name, meta, text)
    envoy = EnvoyProcess(text, workdir / name, name=name)
    await envoy.start(wait_ready=True, timeout=20)
    credential = stack.o.state_dir / "agents" / name / "credential.jwt"
    return Instance(name, runner, envoy, credential, ready_at=time.monotonic())


async def report(mesh: Mesh, instance: Instance, **fields: object) -> None:
    token = instance.credential.read_text().strip()
    async with mesh.session.post(
        mesh.api + "/api/v1/workloads/health", json=fields, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200, await resp.text()


async def until(check: object, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path / "state", delta=False) as found:
        yield found


async def test_scale_health_and_drain_under_load_without_a_failed_request(mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "details.yaml").write_text(CONFIG)
    rc, out = await mesh.cli("apply", "-f", str(tmp_path / "details.yaml"))
    assert rc == 0, out
    instances: dict[str, Instance] = {}
    stop = asyncio.Event()
    load = Load(mesh)
    try:
        instances["details-a"] = await start_instance(mesh, "details-a", tmp_path)
        deadline = time.monotonic() + 15
        while (await mesh.call("details", "/details"))[0] != 200:
            assert time.monotonic() < deadline, "details-a never registered"
            await asyncio.sleep(0.1)
        entries = await mesh.api_get("/api/v1/workloads")
        # the demo's own sidecars register in their groups too: only details' entries are this test's
        details = [w["name"] for w in entries["workloads"] if w["name"].startswith("details-")]
        assert details == ["details-details-a"], entries

        running = asyncio.create_task(load.run(stop))
        await asyncio.sleep(1.0)
        # scale 1 -> 3: each new instance gets traffic within 2 s of its proxy's readiness
        for name in ("details-b", "details-c"):
            instances[name] = await start_instance(mesh, name, tmp_path)
        for name in ("details-b", "details-c"):
            ready = instances[name].ready_at
            await until(lambda n=name: load.by_instance(0)[n] > 0, 10, f"{name} never got traffic")
            first = min(at for at, who in load.answered if who == name)
            assert first - ready <= 2.0, (
                f"{name}: first request {first - ready:.2f}s after its proxy was ready"
            )

        # b's app health check fails: no requests within one push; back after recovery
        await report(mesh, instances["details-b"], healthy=False, message="GET /healthz: 503")
        await asyncio.sleep(1.0)
        quiet_from = time.monotonic()
        await asyncio.sleep(1.5)
        assert load.by_instance(quiet_from)["details-b"] == 0, load.by_instance(quiet_from)
        await report(mesh, instances["details-b"], healthy=True)
        back_from = time.monotonic()
        await until(lambda: load.by_instance(back_from)["details-b"] > 0, 5, "details-b never came back")

        # scale 3 -> 1: a and b drain (DRAINING in EDS, listeners drained), then stop
        for name in ("details-a", "details-b"):
            await report(mesh, instances[name], draining=True)
            assert await drain_listeners(f"127.0.0.1:{instances[name].envoy.admin_port}")
        await asyncio.sleep(2.0)  # the bounded drain time (MECHA_DRAIN_SECONDS)
        for name in ("details-a", "details-b"):
            await instances[name].envoy.stop()
            await instances[name].runner.cleanup()
        after = time.monotonic()
        await asyncio.sleep(1.5)
        assert set(load.by_instance(after)) == {"details-c"}, load.by_instance(after)
        stop.set()
        await running
        assert load.failures == [], (
            f"{len(load.failures)} failed of {len(load.answered)}: {load.failures[:5]}"
        )
        assert len(load.answered) > RATE * 5, len(load.answered)
    finally:
        stop.set()
        for instance in instances.values():
            with contextlib.suppress(Exception):
                await instance.envoy.stop()
                await instance.runner.cleanup()
