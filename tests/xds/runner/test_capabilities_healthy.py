"""`mecha up` is ready only once every Envoy sees its capability service healthy (Stack.
_capabilities_healthy_in_envoys, reading /clusters?format=json through envoy_admin.admin_get_json): against a
real Envoy health-checking a capability service with the translator's own clusters and check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from xds import types
from xds.demo.config import default_layout
from xds.runner import stack as stack_module
from xds.runner.stack import Stack, StackError, StackOptions, capability_hosts_healthy
from xds.testing.envoy import EnvoyProcess, free_port
from xds.translate.cluster import CAPABILITY_READY_PATH, static_cluster
from xds.translate.decode import resource_to_dict

pytestmark = pytest.mark.e2e


@dataclass
class CapabilityService:
    """Answers the readiness path with `status` (503: not ready, as before its components are loaded)."""

    port: int
    status: int = 503
    checks: int = 0  # readiness requests Envoy sent
    checked_twice: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Mesh:
    service: CapabilityService
    envoy: EnvoyProcess
    seen: list[bool] = field(default_factory=list)  # each /clusters answer the wait read: all healthy?


def _cluster(name: str, port: int, ready_port: int, http2: bool = False) -> dict[str, Any]:
    cluster = static_cluster(name, "127.0.0.1", port, http2=http2, ready_port=ready_port)
    return resource_to_dict(types.CLUSTER, bytes(cluster))


@pytest.fixture
async def mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Mesh]:
    service = CapabilityService(free_port())

    async def ready(_request: web.Request) -> web.Response:
        service.checks += 1
        if service.checks >= 2:
            service.checked_twice.set()
        return web.Response(status=service.status)

    app = web.Application()
    app.router.add_get(CAPABILITY_READY_PATH, ready)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", service.port).start()
    admin, grpc, other = free_port(), free_port(), free_port()
    clusters = [
        _cluster("capabilities_http", service.port, service.port),
        _cluster(
            "capabilities_grpc", grpc, service.port, http2=True
        ),  # checked on the HTTP API, as in mecha up
        _cluster("outbound|9080||other", other, other),  # nothing listens: never healthy, not a capability
    ]
    bootstrap = {
        "node": {"id": "productpage-v1", "cluster": "productpage"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"clusters": clusters},
    }
    envoy = EnvoyProcess(yaml.safe_dump(bootstrap), tmp_path / "envoy")
    await envoy.start()
    found = Mesh(service, envoy)
    real_get = stack_module.admin_get_json

    async def recorded(where: str, path: str, timeout_s: float = 5.0) -> Any:
        answer = await real_get(where, path, timeout_s)
        found.seen.append(capability_hosts_healthy(answer))
        return answer

    monkeypatch.setattr(stack_module, "admin_get_json", recorded)
    try:
        yield found
    finally:
        await envoy.stop()
        await runner.cleanup()


def _stack(mesh: Mesh, tmp_path: Path) -> Stack:
    layout = default_layout("sidecar")
    proxy = replace(layout.proxy_of("productpage-v1"), admin_port=mesh.envoy.admin_port)
    options = StackOptions(
        layout=replace(layout, proxies=(proxy,)), state_dir=tmp_path, api_port=1, xds_port=2
    )
    return Stack(options)


async def test_the_wait_keeps_waiting_while_the_service_is_unhealthy_and_returns_once_it_is(
    mesh: Mesh, tmp_path: Path
) -> None:
    wait = asyncio.create_task(_stack(mesh, tmp_path)._capabilities_healthy_in_envoys(time.monotonic() + 120))
    try:
        while mesh.service.checks < 5 or mesh.seen.count(False) < 5:  # Envoy failed it, the wait read that
            assert not wait.done(), wait
            await asyncio.sleep(0.02)
        assert not wait.done()
        assert not any(mesh.seen)
        mesh.service.status = 204  # ready: Envoy's next check marks the host healthy
        await asyncio.wait_for(wait, 60)
    finally:
        wait.cancel()
    assert mesh.seen[-1] is True


async def test_an_unhealthy_service_at_the_deadline_is_an_error(mesh: Mesh, tmp_path: Path) -> None:
    await asyncio.wait_for(mesh.service.checked_twice.wait(), 30)  # Envoy has checked it and seen 503
    with pytest.raises(StackError, match=r"Envoys \['productpage-v1'\] never saw their capability service"):
        await _stack(mesh, tmp_path)._capabilities_healthy_in_envoys(
            time.monotonic()
        )  # one look, then the end
    assert mesh.seen == [False]
