"""State conformance: every backend in config/state.yaml, through the Dapr HTTP API, against real servers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conformance_helpers import component_doc, expand, load_rows, need_server

from capabilities.blocks.state.contract import Feature, Querier, TransactionalStore

ROWS = load_rows("state")
STORE = "store"
FLAG_TO_FEATURE = {"etag": Feature.ETAG, "transaction": Feature.TRANSACTIONAL, "ttl": Feature.TTL,
                   "query": Feature.QUERY_API}  # fmt: skip


@pytest.fixture(params=ROWS, ids=[r["name"] for r in ROWS])
def row(request: pytest.FixtureRequest) -> dict[str, Any]:
    need_server(request.param.get("server"))
    return request.param


def needs(row: dict[str, Any], feature: str) -> None:
    if feature not in row.get("features", []):
        pytest.skip(f"{row['name']} does not support {feature}")


async def _cleanup(row: dict[str, Any], metadata: dict[str, str], app_id: str) -> None:
    if row["type"] == "state.postgresql":
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
        table = metadata["tableName"]
        await conn.execute(f"DROP TABLE IF EXISTS {table}; DROP SEQUENCE IF EXISTS {table}_etag_seq")
        await conn.close()
    elif row["type"] == "state.redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis(host="127.0.0.1", port=6379)
        keys = [k async for k in client.scan_iter(f"*{app_id}||*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def api(row: dict[str, Any], sidecar_factory: Any, tmp_path: Path, uid: str) -> Any:
    metadata = expand(row["metadata"], tmp_path, uid)
    app_id = f"conf-{uid}"
    client, runtime = await sidecar_factory([component_doc(STORE, row["type"], metadata)], app_id=app_id)
    client.row = row
    client.runtime = runtime
    client.metadata = metadata
    yield client
    await _cleanup(row, metadata, app_id)


async def save(api: Any, items: list[dict[str, Any]]) -> Any:
    return await api.post(f"/v1.0/state/{STORE}", json=items)


async def get(api: Any, key: str) -> tuple[int, Any, str | None]:
    resp = await api.get(f"/v1.0/state/{STORE}/{key}")
    body = await resp.json() if resp.status == 200 else None
    return resp.status, body, resp.headers.get("ETag")


async def test_features_match_table_and_protocols(api: Any) -> None:
    store = api.runtime.component("state", STORE)
    declared = {FLAG_TO_FEATURE[f] for f in api.row.get("features", []) if f in FLAG_TO_FEATURE}
    assert store.features() == declared
    assert isinstance(store, TransactionalStore) == (Feature.TRANSACTIONAL in declared)
    assert isinstance(store, Querier) == (Feature.QUERY_API in declared)


async def test_save_get_delete_roundtrip(api: Any) -> None:
    assert (await save(api, [{"key": "k1", "value": {"n": 1}}, {"key": "k2", "value": "text"}])).status == 204
    status, body, etag = await get(api, "k1")
    assert (status, body) == (200, {"n": 1}) and etag
    assert (await get(api, "k2"))[1] == "text"
    assert (await api.delete(f"/v1.0/state/{STORE}/k1")).status == 204
    assert (await get(api, "k1"))[0] == 204
    assert (await api.delete(f"/v1.0/state/{STORE}/never-there")).status == 204


async def test_keys_are_prefixed_with_app_id(api: Any) -> None:
    await save(api, [{"key": "pfx", "value": 7}])
    store = api.runtime.component("state", STORE)
    assert (await store.get(f"{api.runtime.app_id}||pfx")).value == b"7"
    assert await store.get("pfx") is None


async def test_etag_occ(api: Any) -> None:
    needs(api.row, "etag")
    await save(api, [{"key": "e", "value": 1}])
    _, _, etag1 = await get(api, "e")
    assert (await save(api, [{"key": "e", "value": 2, "etag": etag1}])).status == 204
    _, body, etag2 = await get(api, "e")
    assert body == 2 and etag2 != etag1
    stale = await save(api, [{"key": "e", "value": 3, "etag": etag1}])
    assert stale.status == 409
    assert (await stale.json())["errorCode"] == "ERR_STATE_SAVE"
    malformed = await save(api, [{"key": "e", "value": 3, "etag": "not-an-etag"}])
    assert malformed.status == 400
    assert (await api.delete(f"/v1.0/state/{STORE}/e", headers={"If-Match": etag1})).status == 409
    assert (await api.delete(f"/v1.0/state/{STORE}/e", headers={"If-Match": etag2})).status == 204
    assert (await get(api, "e"))[0] == 204
    assert (
        await save(api, [{"key": "e", "value": 1, "etag": etag2}])
    ).status == 409  # gone: etag cannot match


async def test_first_write(api: Any) -> None:
    needs(api.row, "first-write")
    first = {"key": "fw", "value": "a", "options": {"concurrency": "first-write"}}
    assert (await save(api, [first])).status == 204
    assert (await save(api, [first])).status == 409
    _, _, etag = await get(api, "fw")
    ok = {**first, "value": "b", "etag": etag}
    assert (await save(api, [ok])).status == 204
    last = {"key": "fw", "value": "c", "options": {"concurrency": "last-write"}}
    assert (await save(api, [last])).status == 204
    assert (await get(api, "fw"))[1] == "c"


async def test_bulk_get(api: Any) -> None:
    await save(api, [{"key": "b1", "value": {"a": 1}}, {"key": "b2", "value": [1, 2]}])
    resp = await api.post(f"/v1.0/state/{STORE}/bulk", json={"keys": ["b1", "b2", "b3"], "parallelism": 2})
    assert resp.status == 200
    by_key = {item["key"]: item for item in await resp.json()}
    assert by_key["b1"]["data"] == {"a": 1} and by_key["b1"]["etag"]
    assert by_key["b2"]["data"] == [1, 2]
    assert "data" not in by_key["b3"]


async def test_transaction_is_atomic(api: Any) -> None:
    needs(api.row, "transaction")
    await save(api, [{"key": "t1", "value": 1}, {"key": "t2", "value": 2}])
    ops = {"operations": [
        {"operation": "upsert", "request": {"key": "t3", "value": 3}},
        {"operation": "delete", "request": {"key": "t1"}},
        {"operation": "upsert", "request": {"key": "t2", "value": 20, "etag": "999999"}},
    ]}  # fmt: skip
    resp = await api.post(f"/v1.0/state/{STORE}/transaction", json=ops)
    assert resp.status == 409
    assert (await resp.json())["errorCode"] == "ERR_STATE_TRANSACTION"
    assert (await get(api, "t3"))[0] == 204  # nothing applied
    assert (await get(api, "t1"))[1] == 1
    _, _, etag2 = await get(api, "t2")
    ops["operations"][2]["request"]["etag"] = etag2
    assert (await api.post(f"/v1.0/state/{STORE}/transaction", json=ops)).status == 204
    assert [(await get(api, k))[1] for k in ("t1", "t2", "t3")] == [None, 20, 3]


async def test_ttl_expires(api: Any) -> None:
    needs(api.row, "ttl")
    await save(
        api, [{"key": "ttl", "value": "x", "metadata": {"ttlInSeconds": "1"}}, {"key": "keep", "value": "y"}]
    )
    assert (await get(api, "ttl"))[0] == 200
    deadline = time.monotonic() + 5
    while (await get(api, "ttl"))[0] == 200 and time.monotonic() < deadline:  # noqa: ASYNC110 - polls/spawns outside asyncio's view
        await asyncio.sleep(0.2)
    assert (await get(api, "ttl"))[0] == 204
    assert (await get(api, "keep"))[0] == 200


async def test_query(api: Any) -> None:
    needs(api.row, "query")
    people = [
        {"key": "p1", "value": {"name": "ann", "state": "CA", "age": 30, "org": {"team": "a"}}},
        {"key": "p2", "value": {"name": "bob", "state": "WA", "age": 25, "org": {"team": "b"}}},
        {"key": "p3", "value": {"name": "cid", "state": "CA", "age": 41, "org": {"team": "b"}}},
        {"key": "p4", "value": {"name": "dee", "state": "NY", "age": 35, "org": {"team": "a"}}},
    ]
    await save(api, people)
    url = f"/v1.0-alpha1/state/{STORE}/query"

    async def keys(query: dict[str, Any]) -> tuple[list[str], str | None]:
        resp = await api.post(url, json=query)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        return [r["key"] for r in body["results"]], body.get("token")

    assert (await keys({"filter": {"EQ": {"state": "CA"}}, "sort": [{"key": "age"}]}))[0] == ["p1", "p3"]
    assert (await keys({"filter": {"IN": {"state": ["WA", "NY"]}}, "sort": [{"key": "name"}]}))[0] == [
        "p2",
        "p4",
    ]
    both = {"AND": [{"EQ": {"org.team": "b"}}, {"EQ": {"state": "CA"}}]}
    assert (await keys({"filter": both}))[0] == ["p3"]
    either = {"OR": [{"EQ": {"name": "ann"}}, {"EQ": {"name": "dee"}}]}
    assert sorted((await keys({"filter": either}))[0]) == ["p1", "p4"]
    page1, token = await keys({"sort": [{"key": "age", "order": "DESC"}], "page": {"limit": 3}})
    assert page1 == ["p3", "p4", "p1"] and token
    page2, token2 = await keys(
        {"sort": [{"key": "age", "order": "DESC"}], "page": {"limit": 3, "token": token}}
    )
    assert page2 == ["p2"] and token2 is None
    bad = await api.post(url, json={"filter": {"LIKE": {"name": "a"}}})
    assert bad.status == 400 and "LIKE" in (await bad.json())["message"]


async def test_concurrent_first_write_counter_is_exact(api: Any) -> None:
    needs(api.row, "etag")
    writers, increments = 8, 5
    conflicts = 0

    async def writer() -> None:
        nonlocal conflicts
        done = 0
        while done < increments:
            _, value, etag = await get(api, "counter")
            item: dict[str, Any] = {"key": "counter", "options": {"concurrency": "first-write"}}
            item["value"] = (value or 0) + 1
            if etag:
                item["etag"] = etag
            resp = await save(api, [item])
            if resp.status == 204:
                done += 1
            else:
                assert resp.status == 409, await resp.text()
                conflicts += 1

    await asyncio.gather(*(writer() for _ in range(writers)))
    assert (await get(api, "counter"))[1] == writers * increments


async def test_persists_across_restart(api: Any, sidecar_factory: Any) -> None:
    needs(api.row, "persistent")
    await save(api, [{"key": "durable", "value": {"v": 1}}])
    await api.runtime.stop()
    docs = [component_doc(STORE, api.row["type"], api.metadata)]
    client2, _ = await sidecar_factory(docs, app_id=api.runtime.app_id)
    assert (await get(client2, "durable"))[1] == {"v": 1}
