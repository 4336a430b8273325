"""The whole health chain with real processes (issue #15): a capability service (`python -m capabilities`, its
agent embedded, daprd's app health flags) probes its app; the probe fails -> it reports the workload unhealthy
with its workload credential -> the control plane marks the auto-registered WorkloadEntry -> EDS -> a real
Envoy (productpage's proxy) stops sending the instance requests within one probe period plus one push, and
the instance's pub/sub deliveries pause (real Redis). Recovery restores both; every message exactly once and
no failed request (a second, healthy instance serves meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import backend_available
from e2e_mesh import Mesh, demo_mesh, through_agent

from xds.agent.launch import agent_bootstrap, embedded_agent_argv, issue_for, wait_for_sockets
from xds.controlplane.auth import ENV_CONTROL_PLANE_TOKEN_FILE, READER_TOKEN_FILE
from xds.runner.procs import Child
from xds.statedir import write_private_file
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port
from xds.testing.registration import group_and_service

pytestmark = [pytest.mark.e2e, pytest.mark.backend]

PROBE_INTERVAL_S = 1.0
PUSH_S = 1.0  # one push to the Envoy after the report (the control plane debounces then pushes EDS)
RATE = 100  # requests per second through productpage's proxy
CONFIG = group_and_service("details")  # WorkloadGroup + ServiceEntry
PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: orders}
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - {name: redisHost, value: "127.0.0.1:6379"}
  - {name: processingTimeout, value: 500ms}
  - {name: redeliverInterval, value: 300ms}
"""


@dataclass
class DetailsApp:
    """A `details` instance: answers /details with its name, /healthz as told, records pub/sub messages."""

    name: str
    topic: str
    healthy: bool = True
    requests: list[float] = field(default_factory=list)  # monotonic arrival of each /details
    messages: list[int] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        async def details(_request: web.Request) -> web.Response:
            self.requests.append(time.monotonic())
            return web.json_response({"instance": self.name})

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(status=200 if self.healthy else 503)

        async def subscribe(_request: web.Request) -> web.Response:
            return web.json_response([{"pubsubname": "orders", "topic": self.topic, "route": "/orders"}])

        async def order(request: web.Request) -> web.Response:
            self.messages.append(int((await request.json())["data"]["n"]))
            return web.json_response({"status": "SUCCESS"})

        app = web.Application()
        app.router.add_get("/details", details)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/dapr/subscribe", subscribe)
        app.router.add_post("/orders", order)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def since(self, moment: float) -> int:
        return sum(1 for at in self.requests if at >= moment)


def metadata_for(app: DetailsApp) -> dict[str, Any]:
    labels = {"app": "details", "version": "v1"}
    return {
        "mode": "sidecar",
        "namespace": "default",
        "address": "127.0.0.1",
        "workload_group": "details",
        "labels": labels,
        "apps": [{"name": "details", "app_port": app.port, "inbound_port": free_port(), "labels": labels}],
    }


async def plain_instance(mesh: Mesh, app: DetailsApp, workdir: Path) -> EnvoyProcess:
    """An instance whose Envoy reaches the control plane through a standalone agent (no health checks)."""
    meta = metadata_for(app)
    text, _admin = bootstrap_for(app.name, mesh.stack.o.xds_port, meta)
    text = await through_agent(mesh.stack, app.name, meta, text)
    envoy = EnvoyProcess(text, workdir / app.name, name=app.name)
    await envoy.start(wait_ready=True, timeout=20)
    return envoy


async def checked_instance(mesh: Mesh, app: DetailsApp, workdir: Path, dapr_port: int) -> EnvoyProcess:
    """An instance with a capability service beside it, as `mecha up` starts one: the agent embedded in it,
    its app probed every PROBE_INTERVAL_S (threshold 1), a Redis pubsub component."""
    stack = mesh.stack
    meta = metadata_for(app)
    credential = issue_for(stack.o.state_dir, app.name, meta)
    resources = workdir / f"{app.name}-resources"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(PUBSUB)
    argv = [
        sys.executable, "-m", "capabilities", "--app-id", "details", "--dapr-http-port", str(dapr_port),
        "--dapr-grpc-port", "0", "--app-port", str(app.port), "--resources-path", str(resources),
        "--control-plane", stack.api, "--enable-app-health-check", "--app-health-probe-interval",
        str(PROBE_INTERVAL_S), "--app-health-threshold", "1",
        *embedded_agent_argv(credential, f"127.0.0.1:{stack.o.xds_port}",
                             stack.o.state_dir / "ca" / "root-cert.pem", stack.o.trust_domain),
    ]  # fmt: skip
    env = {ENV_CONTROL_PLANE_TOKEN_FILE: str(stack.o.state_dir / READER_TOKEN_FILE)}
    log = stack.logs / f"capabilities-{app.name}.log"
    child = await stack.sup.start(Child(f"capabilities-{app.name}", "capabilities", argv, log), env=env)
    deadline = time.monotonic() + 30
    await wait_for_sockets(child, credential.parent, deadline, f"agent in capabilities-{app.name}")
    text, _admin = bootstrap_for(app.name, stack.o.xds_port, meta)
    path = write_private_file(stack.o.state_dir / "bootstrap" / f"{app.name}.yaml", text)
    bootstrap = await agent_bootstrap(path, credential.parent)
    envoy = EnvoyProcess(bootstrap.read_text(), workdir / app.name, name=app.name)
    await envoy.start(wait_ready=True, timeout=20)
    await wait_components(child, dapr_port, deadline)
    return envoy


async def wait_components(child: Child, dapr_port: int, deadline: float) -> None:
    """Until the capability service's /v1.0/healthz says 204 (components loaded)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            assert child.exited is None and time.monotonic() < deadline, child.log_tail()
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{dapr_port}/v1.0/healthz") as resp:
                    if resp.status == 204:
                        return
            await asyncio.sleep(0.1)


@dataclass
class Load:
    mesh: Mesh
    answered: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(self._one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1.0 / RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    async def _one(self) -> None:
        try:
            status, body = await self.mesh.call("details", "/details")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures.append(repr(exc))
            return
        if status != 200:
            self.failures.append(f"HTTP {status}: {str(body)[:120]}")
        else:
            self.answered += 1


async def until(check: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def publish(dapr_port: int, topic: str, numbers: range) -> None:
    async with aiohttp.ClientSession() as http:
        for n in numbers:
            url = f"http://127.0.0.1:{dapr_port}/v1.0/publish/orders/{topic}"
            async with http.post(
                url, data=json.dumps({"n": n}), headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 204, await r.text()


async def healthy_condition(mesh: Mesh, name: str) -> str:
    rows = (await mesh.api_get("/api/v1/workloads"))["workloads"]
    entry = next((r for r in rows if r["name"] == f"details-{name}"), None)
    if entry is None:
        return "absent"
    return next((c["status"] for c in entry["conditions"] if c["type"] == "Healthy"), "unset")


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path / "state", delta=False) as found:
        yield found


async def test_failing_probe_takes_the_instance_out_of_eds_and_pauses_deliveries(
    mesh: Mesh, tmp_path: Path
) -> None:
    backend_available("127.0.0.1", 6379, "Redis")
    (tmp_path / "details.yaml").write_text(CONFIG)
    rc, out = await mesh.cli("apply", "-f", str(tmp_path / "details.yaml"))
    assert rc == 0, out
    topic = f"chain-{uuid.uuid4().hex[:8]}"
    steady, checked = DetailsApp("steady", topic), DetailsApp("checked", topic)
    envoys: list[EnvoyProcess] = []
    stop = asyncio.Event()
    load = Load(mesh)
    dapr_port = free_port()
    try:
        for app in (steady, checked):
            await app.start()
        envoys.append(await plain_instance(mesh, steady, tmp_path))
        envoys.append(await checked_instance(mesh, checked, tmp_path, dapr_port))
        running = asyncio.create_task(load.run(stop))
        await until(lambda: checked.since(0) > 0 and steady.since(0) > 0, 20, "an instance never got traffic")
        await publish(dapr_port, topic, range(0, 5))
        await until(lambda: len(checked.messages) == 5, 20, "first messages not delivered")

        # the probe fails: out of EDS within one probe period plus one push, deliveries paused
        checked.healthy = False
        failed_at = time.monotonic()
        await asyncio.sleep(PROBE_INTERVAL_S + PUSH_S + 1.0)
        last = max(checked.requests)
        assert last - failed_at <= PROBE_INTERVAL_S + PUSH_S, (
            f"last request {last - failed_at:.2f}s after the probe started failing"
        )
        assert await healthy_condition(mesh, "checked") == "False"
        quiet_from = time.monotonic()
        await publish(dapr_port, topic, range(5, 10))
        await asyncio.sleep(2.0)  # several redeliver intervals
        assert checked.since(quiet_from) == 0, "requests reached the unhealthy instance"
        assert sorted(checked.messages) == list(range(5)), "a paused app got messages"

        # recovery: requests and messages again
        checked.healthy = True
        recovered_at = time.monotonic()
        await until(
            lambda: checked.since(recovered_at) > 0, PROBE_INTERVAL_S + PUSH_S + 5, "never back in EDS"
        )
        first_back = min(at for at in checked.requests if at >= recovered_at)
        assert first_back - recovered_at <= PROBE_INTERVAL_S + PUSH_S
        await until(lambda: len(checked.messages) >= 10, 20, "paused messages never delivered")
        await asyncio.sleep(1.0)  # a duplicate would arrive here
        assert sorted(checked.messages) == list(range(10)), "every message exactly once"
        assert await healthy_condition(mesh, "checked") == "True"
        stop.set()
        await running
        assert load.failures == [], f"{len(load.failures)} failed of {load.answered}: {load.failures[:5]}"
        assert steady.messages == []  # steady has no capability service: it never subscribed
    finally:
        stop.set()
        for envoy in envoys:
            with contextlib.suppress(Exception):
                await envoy.stop()
        for app in (steady, checked):
            if app.runner is not None:
                await app.runner.cleanup()
        with contextlib.suppress(Exception):
            import redis.asyncio as aioredis

            client = aioredis.Redis()
            await client.delete(topic)
            await client.aclose()
