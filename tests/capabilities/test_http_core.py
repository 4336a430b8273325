"""HTTP API skeleton: health, metadata, shutdown, token, body limit, error JSON, bad input."""

from __future__ import annotations

from typing import Any

from capability_testkit import component, need_server

STATE = component("statestore", "state.in-memory")


async def test_healthz_waits_for_components(make_sidecar: Any) -> None:
    client, runtime = await make_sidecar([STATE], load=False)
    not_ready = await client.get("/v1.0/healthz")
    assert not_ready.status == 500
    assert (await not_ready.json())["errorCode"] == "ERR_HEALTH_NOT_READY"
    assert (await client.get("/v1.0/healthz/outbound")).status == 500
    assert (await client.get("/v1.0/metadata")).status == 200  # metadata answers at once
    from capabilities.config.documents import parse_documents

    await runtime.apply_resources(parse_documents([(STATE, "t")]))
    assert (await client.get("/v1.0/healthz")).status == 204
    assert (await client.get("/v1.0/healthz/outbound")).status == 204


async def test_healthz_needs_app_but_outbound_does_not(make_sidecar: Any, unused_tcp_port: int) -> None:
    client, runtime = await make_sidecar([STATE], app_url=f"http://127.0.0.1:{unused_tcp_port}")
    assert (await client.get("/v1.0/healthz/outbound")).status == 204
    resp = await client.get("/v1.0/healthz")
    assert resp.status == 500 and "app channel" in (await resp.json())["message"]
    runtime.app_channel.ready.set()
    assert (await client.get("/v1.0/healthz")).status == 204


async def test_failed_component_makes_healthz_fail_and_names_it(make_sidecar: Any, tmp_path: Any) -> None:
    broken = component("files", "secretstores.local.file", secretsFile=str(tmp_path / "missing.json"))
    client, _ = await make_sidecar([STATE, broken])
    resp = await client.get("/v1.0/healthz")
    assert resp.status == 500
    message = (await resp.json())["message"]
    assert "files" in message and "missing.json" in message
    secret = await client.get("/v1.0/secrets/files/x")
    assert secret.status == 500 and "init failed" in (await secret.json())["message"]


async def test_metadata_document(make_sidecar: Any) -> None:
    sub = {
        "apiVersion": "dapr.io/v2alpha1",
        "kind": "Subscription",
        "metadata": {"name": "orders"},
        "spec": {
            "pubsubname": "bus",
            "topic": "orders",
            "routes": {"default": "/orders"},
            "deadLetterTopic": "dlq",
        },
    }
    client, _ = await make_sidecar([STATE, sub], app_id="shop")
    body = await (await client.get("/v1.0/metadata")).json()
    assert body["id"] == "shop" and body["runtimeVersion"]
    assert body["components"] == [
        {"name": "statestore", "type": "state.in-memory", "version": "v1",
         "capabilities": ["ETAG", "QUERY_API", "TRANSACTIONAL", "TTL"]},
    ]  # fmt: skip
    assert body["subscriptions"][0]["topic"] == "orders"
    assert body["subscriptions"][0]["rules"]["rules"] == [{"match": "", "path": "/orders"}]
    assert body["subscriptions"][0]["deadLetterTopic"] == "dlq"
    assert body["extended"]
    assert (await client.put("/v1.0/metadata/team", data=b"blue")).status == 204
    body = await (await client.get("/v1.0/metadata")).json()
    assert body["extended"]["team"] == "blue"


async def test_shutdown_requests_stop(make_sidecar: Any) -> None:
    import asyncio

    client, runtime = await make_sidecar([STATE])
    assert (await client.post("/v1.0/shutdown")).status == 204
    await asyncio.wait_for(runtime.shutdown_requested.wait(), 2)


async def test_api_token(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([STATE], api_token="s3cret")
    denied = await client.get("/v1.0/metadata")
    assert denied.status == 401 and (await denied.json())["message"] == "invalid api token"
    assert (await client.get("/v1.0/metadata", headers={"dapr-api-token": "wrong"})).status == 401
    assert (await client.get("/v1.0/metadata", headers={"dapr-api-token": "s3cret"})).status == 200
    assert (await client.get("/v1.0/healthz")).status == 204
    assert (await client.get("/v1.0/healthz/outbound")).status == 204


async def test_body_limit(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([STATE], max_body_bytes=1024)
    big = [{"key": "k", "value": "x" * 2000}]
    resp = await client.post("/v1.0/state/statestore", json=big)
    assert resp.status == 413 and (await resp.json())["errorCode"] == "ERR_BODY_TOO_LARGE"

    async def chunks() -> Any:
        for _ in range(4):
            yield b"[" + b" " * 600

    chunked = await client.post("/v1.0/state/statestore", data=chunks())
    assert chunked.status == 413
    small = await client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert small.status == 204


async def test_malformed_input(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([STATE])
    url = "/v1.0/state/statestore"
    bad_json = await client.post(url, data=b"[{", headers={"Content-Type": "application/json"})
    body = await bad_json.json()
    assert (
        bad_json.status == 400
        and body["errorCode"] == "ERR_MALFORMED_REQUEST"
        and "line 1" in body["message"]
    )
    not_list = await client.post(url, json={"key": "a"})
    assert not_list.status == 400 and "array" in (await not_list.json())["message"]
    no_key = await client.post(url, json=[{"value": 1}])
    assert no_key.status == 400 and "[0].key" in (await no_key.json())["message"]
    multipart = await client.post(
        url, data=b"--x--", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert multipart.status == 400 and "multipart" in (await multipart.json())["message"]
    form = await client.post(url, data=b'[{"key":"f","value":1}]',
                             headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.status == 204  # like daprd (curl -d): the Content-Type is not required to be JSON
    bad_ttl = await client.post(url, json=[{"key": "a", "value": 1, "metadata": {"ttlInSeconds": "soon"}}])
    assert bad_ttl.status == 400 and "ttlInSeconds" in (await bad_ttl.json())["message"]
    bad_conc = await client.post(url, json=[{"key": "a", "value": 1, "options": {"concurrency": "whatever"}}])
    assert bad_conc.status == 400
    bad_key = await client.post(url, json=[{"key": "a||b", "value": 1}])
    assert bad_key.status == 400 and "||" in (await bad_key.json())["message"]
    bad_op = await client.post(
        url + "/transaction", json={"operations": [{"operation": "merge", "request": {}}]}
    )
    assert bad_op.status == 400 and (await bad_op.json())["errorCode"] == "ERR_NOT_SUPPORTED_STATE_OPERATION"
    empty = await client.post(url, data=b"")
    assert empty.status == 400


async def test_unknown_store_route_and_method(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([STATE])
    unknown = await client.get("/v1.0/state/nope/k")
    assert unknown.status == 400
    assert await unknown.json() == {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nope is not found",
    }
    route = await client.get("/v1.0/does-not-exist")
    assert route.status == 404 and (await route.json())["errorCode"] == "ERR_NOT_FOUND"
    method = await client.patch("/v1.0/state/statestore")
    assert method.status == 405 and (await method.json())["errorCode"] == "ERR_METHOD_NOT_ALLOWED"


async def test_no_state_store_configured(make_sidecar: Any) -> None:
    client, _ = await make_sidecar([])
    resp = await client.get("/v1.0/state/any/k")
    assert resp.status == 400 and (await resp.json())["errorCode"] == "ERR_STATE_STORE_NOT_CONFIGURED"


async def test_query_not_supported(make_sidecar: Any, docs_component: Any) -> None:
    need_server("Redis", "127.0.0.1", 6379)
    client, _ = await make_sidecar([docs_component("r", "state.redis", redisHost="127.0.0.1:6379")])
    resp = await client.post("/v1.0-alpha1/state/r/query", json={"filter": {"EQ": {"a": 1}}})
    assert resp.status == 500 and (await resp.json())["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"


async def test_key_prefix_strategies(make_sidecar: Any) -> None:
    docs = [
        component("by-name", "state.in-memory", keyPrefix="name"),
        component("no-prefix", "state.in-memory", keyPrefix="none"),
        component("custom", "state.in-memory", keyPrefix="shared"),
    ]
    client, runtime = await make_sidecar(docs, app_id="app1")
    for store in ("by-name", "no-prefix", "custom"):
        assert (await client.post(f"/v1.0/state/{store}", json=[{"key": "k", "value": 1}])).status == 204
    assert await runtime.component("state", "by-name").get("by-name||k") is not None
    assert await runtime.component("state", "no-prefix").get("k") is not None
    assert await runtime.component("state", "custom").get("shared||k") is not None
