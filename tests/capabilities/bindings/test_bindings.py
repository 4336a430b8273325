"""Bindings through the HTTP API and input delivery: output operations per backend, bad input, cron -> app."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from capability_testkit import component, need_server

from capabilities.components.bindings.cron import Schedule
from capabilities.daprspec.component import ComponentSpec
from capabilities.delivery.http import manager_for
from capabilities.errors import DaprError


async def call(client: Any, name: str, body: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(f"/v1.0/bindings/{name}", data=data)


async def test_localstorage_create_get_list_delete_and_traversal(make_sidecar: Any, tmp_path: Path) -> None:
    client, _ = await make_sidecar(
        [component("files", "bindings.localstorage", rootPath=str(tmp_path / "root"))]
    )
    created = await call(
        client, "files", {"operation": "create", "data": "Hello", "metadata": {"fileName": "a.txt"}}
    )
    assert created.status == 200 and (await created.json()) == {"fileName": "a.txt"}
    assert (tmp_path / "root" / "a.txt").read_text() == "Hello"
    await call(
        client, "files", {"operation": "create", "data": {"k": 1}, "metadata": {"fileName": "d/b.json"}}
    )
    got = await call(client, "files", {"operation": "get", "metadata": {"fileName": "d/b.json"}})
    assert got.status == 200 and json.loads(await got.read()) == {"k": 1}
    listed = await call(client, "files", {"operation": "list"})
    assert await listed.json() == ["a.txt", "d/b.json"]
    assert (
        await call(client, "files", {"operation": "delete", "metadata": {"fileName": "a.txt"}})
    ).status == 204
    assert not (tmp_path / "root" / "a.txt").exists()
    for evil in ("../escape.txt", "/etc/passwd", "d/../../x"):
        resp = await call(
            client, "files", {"operation": "create", "data": "x", "metadata": {"fileName": evil}}
        )
        assert resp.status == 400, evil
        assert "outside rootPath" in (await resp.json())["message"]
    assert not (tmp_path / "escape.txt").exists()
    missing = await call(client, "files", {"operation": "get", "metadata": {"fileName": "nope"}})
    assert missing.status == 400 and "not found" in (await missing.json())["message"]


async def test_bad_requests_and_unknown_binding(make_sidecar: Any, tmp_path: Path) -> None:
    client, _ = await make_sidecar([component("files", "bindings.localstorage", rootPath=str(tmp_path))])
    assert (await call(client, "files", b"{broken")).status == 400
    no_op = await call(client, "files", {"data": 1})
    assert no_op.status == 400 and "operation" in (await no_op.json())["message"]
    unsupported = await call(client, "files", {"operation": "explode"})
    body = await unsupported.json()
    assert unsupported.status == 500 and body["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "explode" in body["message"] and "create" in body["message"]
    unknown = await call(client, "ghost", {"operation": "create"})
    assert unknown.status in (400, 404, 500) and "ghost" in (await unknown.json())["message"]


async def test_http_binding_calls_the_url(make_sidecar: Any) -> None:
    seen: list[tuple[str, str, bytes, str]] = []

    async def target(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read(), request.headers.get("X-Thing", "")))
        if request.path.endswith("/fail"):
            return web.Response(status=503, text="down")
        return web.json_response({"echo": request.method})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target)
    server = TestServer(app)
    await server.start_server()
    try:
        url = str(server.make_url("/api"))
        client, _ = await make_sidecar([component("web", "bindings.http", url=url)])
        resp = await call(
            client,
            "web",
            {"operation": "post", "data": {"a": 1}, "metadata": {"path": "items", "X-Thing": "t"}},
        )
        assert resp.status == 200 and (await resp.json()) == {"echo": "POST"}
        assert resp.headers["metadata.statusCode"] == "200"
        assert seen[-1] == ("POST", "/api/items", b'{"a":1}', "t")
        assert (await call(client, "web", {"operation": "get"})).status == 200 and seen[-1][0] == "GET"
        failed = await call(client, "web", {"operation": "get", "metadata": {"path": "fail"}})
        assert failed.status == 500 and "503" in (await failed.json())["message"]
    finally:
        await server.close()


@pytest.mark.backend
async def test_postgresql_exec_query_and_errors(make_sidecar: Any) -> None:
    need_server("PostgreSQL", "127.0.0.1", 5432)
    table = f"t_{uuid.uuid4().hex[:8]}"
    client, _ = await make_sidecar(
        [component("db", "bindings.postgresql", connectionString="postgresql://postgres@127.0.0.1:5432/test")]
    )

    async def sql(op: str, statement: str, params: list[Any] | None = None) -> Any:
        meta = {"sql": statement, **({"params": json.dumps(params)} if params is not None else {})}
        return await call(client, "db", {"operation": op, "metadata": meta})

    try:
        assert (await sql("exec", f"CREATE TABLE {table} (id int, name text)")).status == 204
        inserted = await sql("exec", f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)", [1, "a", 2, "b"])
        assert inserted.status == 204 and inserted.headers["metadata.rows-affected"] == "2"
        rows = await sql("query", f"SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id", [1])
        assert rows.status == 200 and await rows.json() == [[1, "a"], [2, "b"]]
        bad = await sql("query", "SELEC nonsense")
        assert bad.status == 400 and "syntax" in (await bad.json())["message"]
        assert (await call(client, "db", {"operation": "query"})).status == 400  # no sql
        assert (await call(client, "db", {"operation": "close"})).status == 204
        assert (await sql("query", "SELECT 1")).status == 200  # reopens after close
    finally:
        await sql("exec", f"DROP TABLE IF EXISTS {table}")


def test_cron_schedules() -> None:
    def schedule(expr: str) -> Schedule:
        return Schedule(
            ComponentSpec(name="c", type="bindings.cron", metadata={"schedule": expr}, source="c.yaml")
        )

    assert schedule("@every 1m30s").next_delay(0) == 90
    assert 0 < schedule("*/5 * * * * *").next_delay(1000.5) <= 5  # 6 fields: seconds first
    assert 0 < schedule("0 * * * *").next_delay(1000) <= 3600
    assert 0 < schedule("@daily").next_delay(1000) <= 86400
    for bad in ("@every soon", "* * *", "61 * * * *", ""):
        with pytest.raises(DaprError) as info:
            schedule(bad)
        assert "c.yaml" in info.value.message and "schedule" in info.value.message


async def test_cron_input_binding_is_delivered_to_the_app(make_sidecar: Any) -> None:
    posts: list[dict[str, str]] = []
    options: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        if request.method == "OPTIONS":
            options.append(request.path)
            return web.Response(status=200 if request.path == "/tick" else 404)
        if request.path == "/dapr/subscribe":
            return web.json_response([])
        posts.append({"path": request.path, **request.headers})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        docs = [
            component("tick", "bindings.cron", schedule="@every 100ms"),
            component("ignored", "bindings.cron", schedule="@every 100ms"),
        ]
        _, runtime = await make_sidecar(docs, app_url=str(server.make_url("")).rstrip("/"))
        manager = manager_for(runtime)
        assert manager is not None
        await asyncio.wait_for(manager.ready.wait(), 10)
        async with asyncio.timeout(5):
            while len(posts) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert {p["path"] for p in posts} == {"/tick"}, "the app declined /ignored with 404"
        assert sorted(options) == ["/ignored", "/tick"]
        assert "readTimeUTC" in posts[0]
    finally:
        await server.close()
