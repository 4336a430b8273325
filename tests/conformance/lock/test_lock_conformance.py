"""Lock conformance: every backend in config/lock.yaml through /v1.0-alpha1/lock|unlock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from conformance_helpers import component_doc, drop_pg_tables, expand, load_rows, need_server

ROWS = load_rows("lock")


@pytest.fixture(params=ROWS, ids=[r["name"] for r in ROWS])
async def api(request: pytest.FixtureRequest, sidecar_factory: Any, tmp_path: Path, uid: str) -> Any:
    row = request.param
    need_server(row.get("server"))
    metadata = expand(row["metadata"], tmp_path, uid)
    client, _ = await sidecar_factory([component_doc("locks", row["type"], metadata)], app_id=f"conf-{uid}")
    yield client
    if row["type"] == "lock.postgresql":
        await drop_pg_tables(metadata["tableName"])


async def lock(api: Any, resource: str, owner: str, expiry: int = 10) -> bool:
    resp = await api.post("/v1.0-alpha1/lock/locks", json={"resourceId": resource, "lockOwner": owner,
                                                          "expiryInSeconds": expiry})  # fmt: skip
    assert resp.status == 200, await resp.text()
    return (await resp.json())["success"]


async def unlock(api: Any, resource: str, owner: str) -> int:
    resp = await api.post("/v1.0-alpha1/unlock/locks", json={"resourceId": resource, "lockOwner": owner})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["status"]


async def test_lock_is_exclusive_and_unlock_statuses(api: Any) -> None:
    assert await lock(api, "r1", "alice") is True
    assert await lock(api, "r1", "bob") is False
    assert await unlock(api, "r1", "bob") == 2  # belongs to someone else
    assert await unlock(api, "r1", "alice") == 0
    assert await unlock(api, "r1", "alice") == 1  # does not exist any more
    assert await lock(api, "r1", "bob") is True


async def test_lock_expires(api: Any) -> None:
    assert await lock(api, "r2", "alice", expiry=1)
    deadline = time.monotonic() + 5
    while not await lock(api, "r2", "bob", expiry=5):
        assert time.monotonic() < deadline, "lock never expired"
        await asyncio.sleep(0.2)
    assert await unlock(api, "r2", "alice") == 2


async def test_concurrent_lockers_only_one_wins(api: Any) -> None:
    results = await asyncio.gather(*(lock(api, "r3", f"owner-{i}") for i in range(10)))
    assert results.count(True) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"lockOwner": "a", "expiryInSeconds": 5}, "ResourceId is empty"),
        ({"resourceId": "r", "expiryInSeconds": 5}, "LockOwner is empty"),
        ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 0}, "ExpiryInSeconds is not positive"),
    ],
)
async def test_bad_requests(api: Any, body: dict[str, Any], fragment: str) -> None:
    resp = await api.post("/v1.0-alpha1/lock/locks", json=body)
    payload = await resp.json()
    assert resp.status == 400 and payload["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert fragment in payload["message"]


async def test_unknown_store(api: Any) -> None:
    resp = await api.post(
        "/v1.0-alpha1/lock/nope", json={"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 1}
    )
    assert resp.status == 400 and (await resp.json())["errorCode"] == "ERR_LOCK_STORE_NOT_FOUND"
