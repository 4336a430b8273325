"""Sequencer conformance: every backend in config/sequencer.yaml through /v1.0-alpha1/sequencer/{store}."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conformance_helpers import component_doc, drop_pg_tables, expand, load_rows, need_server

ROWS = load_rows("sequencer")


@pytest.fixture(params=ROWS, ids=[r["name"] for r in ROWS])
async def api(request: pytest.FixtureRequest, sidecar_factory: Any, tmp_path: Path, uid: str) -> Any:
    row = request.param
    need_server(row.get("server"))
    metadata = expand(row["metadata"], tmp_path, uid)
    docs = [component_doc("seq", row["type"], metadata)]
    client, runtime = await sidecar_factory(docs, app_id=f"conf-{uid}")
    client.row, client.runtime, client.docs, client.factory = row, runtime, docs, sidecar_factory
    yield client
    if row["type"] == "sequencer.postgresql":
        await drop_pg_tables(metadata["tableName"])
    elif row["type"] == "sequencer.redis":
        import redis.asyncio as aioredis

        redis = aioredis.Redis(host="127.0.0.1", port=6379)
        keys = [k async for k in redis.scan_iter(f"sequencer||conf-{uid}||*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def next_id(api: Any, key: str, increment: str | None = "STRONG") -> int:
    body: dict[str, Any] = {"key": key}
    if increment:
        body["options"] = {"increment": increment}
    resp = await api.post("/v1.0-alpha1/sequencer/seq", json=body)
    assert resp.status == 200, await resp.text()
    value = (await resp.json())["next_id"]
    assert isinstance(value, str)
    return int(value)


async def test_strictly_increasing_per_key(api: Any) -> None:
    ids = [await next_id(api, "orders") for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] >= 1
    assert await next_id(api, "invoices", "WEAK") >= 1
    assert await next_id(api, "orders", None) > ids[-1]


async def test_concurrent_callers_get_distinct_ids(api: Any) -> None:
    ids = await asyncio.gather(*(next_id(api, "burst") for _ in range(30)))
    assert len(set(ids)) == 30


async def test_survives_restart(api: Any) -> None:
    if "persistent" not in api.row.get("features", []) and api.row["type"] != "sequencer.redis":
        pytest.skip("in-memory counters do not survive a restart")
    last = await next_id(api, "durable")
    await api.runtime.stop()
    client2, _ = await api.factory(api.docs, app_id=api.runtime.app_id)
    assert await next_id(client2, "durable") > last


async def test_bad_requests(api: Any) -> None:
    missing = await api.post("/v1.0-alpha1/sequencer/seq", json={"options": {"increment": "STRONG"}})
    assert missing.status == 400 and (await missing.json())["errorCode"] == "ERR_MALFORMED_REQUEST"
    bad_mode = await api.post(
        "/v1.0-alpha1/sequencer/seq", json={"key": "k", "options": {"increment": "FAST"}}
    )
    assert bad_mode.status == 400 and "FAST" in (await bad_mode.json())["message"]
    unknown = await api.post("/v1.0-alpha1/sequencer/nope", json={"key": "k"})
    assert unknown.status == 400 and (await unknown.json())["errorCode"] == "ERR_SEQUENCER_STORE_NOT_FOUND"
