"""Configuration conformance: every backend in config/configuration.yaml; updates reach a real app server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conformance_helpers import component_doc, drop_pg_tables, expand, load_rows, need_server

ROWS = load_rows("configuration")


class Writer:
    """Changes items directly in the backend, the way an operator would."""

    def __init__(self, row: dict[str, Any], metadata: dict[str, str], runtime: Any) -> None:
        self.type = row["type"]
        self.metadata = metadata
        self.runtime = runtime
        self.written: list[str] = []

    async def set(self, key: str, value: str, version: str) -> None:
        self.written.append(key)
        if self.type == "configuration.in-memory":
            await self.runtime.component("configuration", "cfg").set(key, value, version)
        elif self.type == "configuration.redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis(host="127.0.0.1", port=6379, db=int(self.metadata["redisDB"]))
            await client.set(key, f"{value}||{version}")
            await client.aclose()
        else:
            import asyncpg

            conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
            await conn.execute(
                f"INSERT INTO {self.metadata['table']} (key, value, version, metadata) "
                "VALUES ($1, $2, $3, '{}') "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version",
                key,
                value,
                version,
            )
            await conn.close()

    async def cleanup(self) -> None:
        if self.type == "configuration.redis" and self.written:
            import redis.asyncio as aioredis

            client = aioredis.Redis(host="127.0.0.1", port=6379, db=int(self.metadata["redisDB"]))
            await client.delete(*self.written)
            await client.aclose()
        elif self.type == "configuration.postgresql":
            await drop_pg_tables(self.metadata["table"])


@pytest.fixture
async def app_server() -> Any:
    received: list[tuple[str, dict[str, Any]]] = []

    async def on_update(request: web.Request) -> web.Response:
        received.append((request.path, json.loads(await request.read())))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/configuration/{store}/{key}", on_update)
    server = TestServer(app)
    await server.start_server()
    server.received = received
    yield server
    await server.close()


@pytest.fixture(params=ROWS, ids=[r["name"] for r in ROWS])
async def api(
    request: pytest.FixtureRequest, sidecar_factory: Any, app_server: Any, tmp_path: Path, uid: str
) -> Any:
    row = request.param
    need_server(row.get("server"))
    metadata = expand(row["metadata"], tmp_path, uid)
    app_url = str(app_server.make_url("")).rstrip("/")
    client, runtime = await sidecar_factory([component_doc("cfg", row["type"], metadata)], app_url=app_url)
    client.writer = Writer(row, metadata, runtime)
    client.received = app_server.received
    client.uid = uid
    yield client
    await client.writer.cleanup()


async def wait_for(predicate: Any, what: str) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polls/spawns outside asyncio's view
            await asyncio.sleep(0.05)


async def test_get_items(api: Any) -> None:
    k1, k2 = f"a-{api.uid}", f"b-{api.uid}"
    await api.writer.set(k1, "v1", "1")
    await api.writer.set(k2, "v2", "7")
    resp = await api.get(f"/v1.0/configuration/cfg?key={k1}&key={k2}&key=missing-{api.uid}")
    assert resp.status == 200
    assert await resp.json() == {
        k1: {"value": "v1", "version": "1", "metadata": {}},
        k2: {"value": "v2", "version": "7", "metadata": {}},
    }
    alpha = await api.get(f"/v1.0-alpha1/configuration/cfg?key={k1}")
    assert (await alpha.json())[k1]["value"] == "v1"
    assert (await api.get(f"/v1.0/configuration/cfg?key=missing-{api.uid}")).status == 204


async def test_subscribe_delivers_updates_to_app_then_unsubscribe(api: Any) -> None:
    key = f"watched-{api.uid}"
    other = f"other-{api.uid}"
    resp = await api.get(f"/v1.0/configuration/cfg/subscribe?key={key}")
    assert resp.status == 200
    sub_id = (await resp.json())["id"]
    await api.writer.set(other, "ignored", "1")
    await api.writer.set(key, "on", "2")
    await wait_for(
        lambda: any(path.endswith(f"/{key}") for path, _ in api.received), "update for watched key"
    )
    path, body = next((p, b) for p, b in api.received if p.endswith(f"/{key}"))
    assert path == f"/configuration/cfg/{key}"
    assert body["id"] == sub_id and body["items"][key]["value"] == "on"
    assert not any(p.endswith(f"/{other}") for p, _ in api.received)
    unsub = await api.get(f"/v1.0/configuration/cfg/{sub_id}/unsubscribe")
    assert (unsub.status, await unsub.json()) == (200, {"ok": True})
    count = len(api.received)
    await api.writer.set(key, "off", "3")
    await asyncio.sleep(0.5)  # give a wrongly kept subscription the chance to deliver
    assert len(api.received) == count
    again = await api.get(f"/v1.0/configuration/cfg/{sub_id}/unsubscribe")
    assert again.status == 500 and (await again.json())["errorCode"] == "ERR_CONFIGURATION_UNSUBSCRIBE"


async def test_unknown_store(api: Any) -> None:
    resp = await api.get("/v1.0/configuration/nope?key=a")
    assert resp.status == 400 and (await resp.json())["errorCode"] == "ERR_CONFIGURATION_STORE_NOT_FOUND"
