"""The compose config folder runs unchanged under `mecha up`: `mecha up --config compose/config
--config compose/endpoints/local` (the local endpoints are at mecha up's default ports)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from deploy_helpers import COMPOSE, backend_available

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout
from xds.runner.procs import port_in_use
from xds.runner.stack import Stack, StackOptions

pytestmark = pytest.mark.e2e


async def _request(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.request(method, url, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None


async def test_mecha_up_serves_the_compose_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_available("127.0.0.1", 6379, "Redis")
    backend_available("127.0.0.1", 5432, "PostgreSQL")
    layout = default_layout("sidecar")
    busy = [p for p in [DEFAULT_API_PORT, DEFAULT_XDS_PORT, *layout.ports().values()] if port_in_use(p)]
    if busy:  # the endpoints file names mecha up's default ports, so they must be free
        pytest.skip(f"mecha up's default ports are in use: {busy[:5]}")
    # The capability services read backend addresses from their environment (the envstore secret store).
    monkeypatch.setenv("MECHA_REDIS_HOST", "127.0.0.1:6379")
    monkeypatch.setenv("MECHA_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    stack = Stack(
        StackOptions(
            layout=layout,
            state_dir=tmp_path / ".mecha",
            api_port=DEFAULT_API_PORT,
            xds_port=DEFAULT_XDS_PORT,
            config_dir=COMPOSE / "config",
            extra_config_dirs=[COMPOSE / "endpoints" / "local"],
        )
    )
    try:
        await stack.start(90)
        assert stack.notes == []  # every capability service started with the shared Dapr components
        pp = layout.workload("productpage-v1")
        status, body = await _request(
            "GET", f"http://127.0.0.1:{pp.inbound_port}/productpage", headers={"end-user": "jason"}
        )
        assert status == 200 and body["reviews"]["body"]["version"] == "v2"
        dapr = f"http://127.0.0.1:{layout.proxy_of('productpage-v1').dapr_http_port}/v1.0"
        for store in ("statestore", "inventory-store"):  # Redis and PostgreSQL, via the Envoy Dapr listener
            key = f"shared-{uuid.uuid4().hex}"
            status, _ = await _request("POST", f"{dapr}/state/{store}", json=[{"key": key, "value": 7}])
            assert status == 204, store
            assert await _request("GET", f"{dapr}/state/{store}/{key}") == (200, 7)
    finally:
        await stack.stop()
