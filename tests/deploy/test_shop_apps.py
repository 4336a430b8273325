"""compose/apps/shop.py with real capability services configured by the shared compose config:
orders saves to Redis and publishes; inventory receives the order and keeps stock in PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from deploy_helpers import COMPOSE, backend_available

from xds.runner.procs import Child, Supervisor
from xds.testing.envoy import free_port

pytestmark = pytest.mark.backend


async def _request(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.request(method, url, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None


async def _wait_ok(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if 200 <= (await _request("GET", url))[0] < 300:
                return
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not healthy in {within}s")


async def test_orders_flow_into_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_available("127.0.0.1", 6379, "Redis")
    backend_available("127.0.0.1", 5432, "PostgreSQL")
    monkeypatch.setenv("MECHA_REDIS_HOST", "127.0.0.1:6379")
    monkeypatch.setenv("MECHA_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    # the run's own state folder (config store, tokens): nothing leaks between runs through ./.mecha;
    # the capability services find their reader token in it through the inherited environment
    state = tmp_path / "state"
    monkeypatch.setenv("MECHA_STATE_DIR", str(state))
    api_port, xds_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    py, sup = sys.executable, Supervisor()
    ports = {app: (free_port(), free_port()) for app in ("orders", "inventory")}  # (app, capabilities)
    try:
        config = ["--config", str(COMPOSE / "config"), "--config", str(COMPOSE / "endpoints" / "local")]
        serve = [py, "-m", "xds.cli", "serve", "--port", str(api_port), "--xds-port", str(xds_port), *config,
                 "--state-dir", str(state)]  # fmt: skip
        await sup.start(Child("control-plane", "control-plane", serve, tmp_path / "cp.log"))
        await _wait_ok(f"{api}/readyz")
        for app, (app_port, caps_port) in ports.items():
            shop = [py, str(COMPOSE / "apps" / "shop.py"), app, "--port", str(app_port),
                    "--dapr", f"http://127.0.0.1:{caps_port}"]  # fmt: skip
            await sup.start(Child(app, "app", shop, tmp_path / f"{app}.log"))
            await _wait_ok(f"http://127.0.0.1:{app_port}/healthz")
            caps = [py, "-m", "capabilities", "--app-id", app, "--dapr-http-port", str(caps_port),
                    "--dapr-grpc-port", "0", "--control-plane", api, "--app-port", str(app_port)]  # fmt: skip
            await sup.start(Child(f"caps-{app}", "capabilities", caps, tmp_path / f"caps-{app}.log"))
            await _wait_ok(f"http://127.0.0.1:{caps_port}/v1.0/healthz")
        orders, inventory = (f"http://127.0.0.1:{ports[a][0]}" for a in ("orders", "inventory"))
        item, order_id = f"book-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        status, _ = await _request("GET", f"{inventory}/stock/{item}")
        assert (status, _) == (200, {"item": item, "stock": 100})
        status, body = await _request(
            "POST", f"{orders}/orders", json={"id": order_id, "item": item, "quantity": 3}
        )
        assert status == 201, body
        assert await _request("GET", f"{orders}/orders/{order_id}") == (
            200, {"id": order_id, "item": item, "quantity": 3},
        )  # fmt: skip
        deadline, stock = time.monotonic() + 20, 100
        while time.monotonic() < deadline and stock != 97:
            stock = (await _request("GET", f"{inventory}/stock/{item}"))[1]["stock"]
            await asyncio.sleep(0.2)
        assert stock == 97  # delivered once through Redis pub/sub, stored in PostgreSQL
        status, body = await _request("POST", f"{orders}/orders", json={"item": item})
        assert status == 400 and "id" in body["error"]
    finally:
        await sup.stop_all()
