"""The Dapr API end to end through real Envoys: A (alpha) calls B (beta) on A's Dapr listener.

Topology (tests/e2e/dapr_e2e.py): control plane (per-service route tables), three test apps, one capability
service and one Envoy per app; Dapr Components/Subscriptions are pushed with `mecha apply` and reach the
capability services by the control plane's long-poll. Invocation is routed by Envoy itself (A's Dapr
listener -> A's outbound scopes -> B's inbound -> B), the other APIs go A's Dapr listener -> A's capability
service; pub/sub delivery goes B's capability service -> B's inbound listener -> B.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from dapr_e2e import AppSpec, DaprMesh, component, require_server, start_dapr_mesh, stop_dapr_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RUN = uuid.uuid4().hex[:8]  # Redis streams outlive a run: topics are unique per run
TOPICS = {name: f"{name}-{RUN}" for name in ("orders", "audit", "flaky", "risky", "risky-dlq", "bulk")}
TOKEN = "s3cret-token"


def _subscription(name: str, topic: str, route: str, dead_letter: str = "") -> dict:
    spec: dict[str, Any] = {"pubsubname": "events", "topic": topic, "routes": {"default": route}}
    if dead_letter:
        spec["deadLetterTopic"] = dead_letter
    return {
        "apiVersion": "dapr.io/v2alpha1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
        "scopes": ["beta"],
    }


def components(tmp: Path) -> list[dict]:
    return [
        component("memstate", "state.in-memory", {}),
        component("sqlstate", "state.sqlite", {"connectionString": str(tmp / "state.db")}),
        component("redisstate", "state.redis", {"redisHost": "127.0.0.1:6379"}),
        # short processingTimeout: a killed subscriber's pending entries are reclaimed within a second
        component(
            "events",
            "pubsub.redis",
            {"redisHost": "127.0.0.1:6379", "processingTimeout": "1s", "redeliverInterval": "500ms"},
        ),
        _subscription("beta-audit", TOPICS["audit"], "/deliver/audit"),
        _subscription("beta-risky", TOPICS["risky"], "/deliver/risky", dead_letter=TOPICS["risky-dlq"]),
        _subscription("beta-dlq", TOPICS["risky-dlq"], "/deliver/dlq"),
    ]


PROGRAMMATIC = [
    {"pubsubname": "events", "topic": TOPICS[name], "route": f"/deliver/{name}"}
    for name in ("orders", "flaky", "bulk")
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DaprMesh]:
    require_server("Redis", 6379)
    tmp = tmp_path_factory.mktemp("dapr-mesh")
    specs = [
        AppSpec("alpha"),
        AppSpec("beta", env={"TESTAPP_SUBSCRIPTIONS": json.dumps(PROGRAMMATIC)}),
        AppSpec("secure", capabilities_env={"DAPR_API_TOKEN": TOKEN}),
    ]
    # scoped route tables: invocation re-enters the outbound scopes through Envoy's internal listener (the
    # single-table path, invoke routes carrying the VirtualService's action, runs in the SDK, node-mode and
    # resiliency modules)
    mesh = await start_dapr_mesh(specs, tmp, {"MECHA_ROUTE_TABLES": "scoped"})
    try:
        await mesh.apply(components(tmp), "dapr")
        for service in ("alpha", "beta"):
            await mesh.wait_components(service, {"memstate", "sqlstate", "redisstate", "events"})
        yield mesh
    finally:
        await stop_dapr_mesh(mesh)


async def _request(mesh: DaprMesh, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with mesh.session.request(method, url, **kw) as resp:
        text = await resp.text()
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        return resp.status, body, resp.headers.copy()  # case-insensitive (Envoy lowercases)


# ---- service invocation -------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_invoke_every_verb_nested_path_and_query(mesh: DaprMesh, verb: str) -> None:
    url = mesh.dapr_http("alpha") + "/v1.0/invoke/beta/method/echo/a/b/c?x=1&y=two"
    status, body, headers = await _request(mesh, verb, url, data=b"payload" if verb != "GET" else None)
    assert status == 200, body
    assert body["app"] == "beta" and body["method"] == verb
    assert body["path"] == "/echo/a/b/c" and body["query"] == "x=1&y=two"
    assert body["body"] == ("payload" if verb != "GET" else "")
    assert headers.get("x-testapp") == "beta"  # the app's own response header comes back


async def test_invoke_status_passthrough(mesh: DaprMesh) -> None:
    for code in (404, 418, 500):
        status, body, _ = await _request(
            mesh, "GET", mesh.dapr_http("alpha") + f"/v1.0/invoke/beta/method/status/{code}"
        )
        assert status == code and body == {"app": "beta", "status": code}


async def test_invoke_by_dapr_app_id_header_and_namespaced_id(mesh: DaprMesh) -> None:
    status, body, _ = await _request(
        mesh, "POST", mesh.dapr_http("alpha") + "/echo/by-header?q=1", headers={"dapr-app-id": "beta"}
    )
    assert status == 200 and body["app"] == "beta" and body["path"] == "/echo/by-header"
    assert "dapr-app-id" not in {k.lower() for k in body["headers"]}  # Envoy strips the routing header
    status, body, _ = await _request(
        mesh, "GET", mesh.dapr_http("alpha") + "/v1.0/invoke/beta.default/method/echo/ns"
    )
    assert status == 200 and body["app"] == "beta" and body["path"] == "/echo/ns"


async def test_invoke_uses_the_mesh_retries(mesh: DaprMesh) -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "beta", "namespace": "default"},
        "spec": {
            "hosts": ["beta"],
            "http": [
                {"route": [{"destination": {"host": "beta"}}], "retries": {"attempts": 3, "retryOn": "5xx"}}
            ],
        },
    }
    await mesh.apply([vs], "beta-retries")
    await mesh.stack.wait_synced()
    # Until A's Envoy has the VS, /fail?n=2 answers 503; with it, the third attempt answers 200.
    for i in range(50):
        status, body, _ = await _request(
            mesh, "GET", mesh.dapr_http("alpha") + f"/v1.0/invoke/beta/method/fail?n=2&key=r{i}"
        )
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200 and body["attempt"] == 3, body


# ---- state --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["memstate", "sqlstate", "redisstate"])
async def test_state_etag_conflicts_through_envoy(mesh: DaprMesh, store: str) -> None:
    base = mesh.dapr_http("alpha") + f"/v1.0/state/{store}"
    key = f"etag-{uuid.uuid4().hex[:8]}"
    status, _, _ = await _request(mesh, "POST", base, json=[{"key": key, "value": {"n": 1}}])
    assert status == 204
    status, body, headers = await _request(mesh, "GET", f"{base}/{key}")
    assert status == 200 and body == {"n": 1}
    etag = headers["ETag"]
    stale = [{"key": key, "value": {"n": 2}, "etag": etag + "0"}]
    status, body, _ = await _request(mesh, "POST", base, json=stale)
    assert status == 409 and body["errorCode"] == "ERR_STATE_SAVE", body
    status, _, _ = await _request(mesh, "POST", base, json=[{"key": key, "value": {"n": 2}, "etag": etag}])
    assert status == 204
    status, body, _ = await _request(mesh, "DELETE", f"{base}/{key}", headers={"If-Match": etag})
    assert status == 409 and body["errorCode"] == "ERR_STATE_DELETE", body
    status, body, _ = await _request(mesh, "GET", f"{base}/{key}")
    assert body == {"n": 2}


@pytest.mark.parametrize("store", ["sqlstate", "redisstate"])
async def test_concurrent_first_write_writers_give_exact_totals(mesh: DaprMesh, store: str) -> None:
    base = mesh.dapr_http("alpha") + f"/v1.0/state/{store}"
    key = f"counter-{uuid.uuid4().hex[:8]}"
    writers, increments = 8, 5
    # Creation race: with first-write and no etag, exactly one writer creates the key.
    first = [{"key": key, "value": 0, "options": {"concurrency": "first-write"}}]
    created = await asyncio.gather(*(_request(mesh, "POST", base, json=first) for _ in range(writers)))
    assert sorted(s for s, _, _ in created) == [204] + [409] * (writers - 1)
    conflicts = Counter[str]()

    async def writer() -> None:
        done = 0
        while done < increments:
            _, value, headers = await _request(mesh, "GET", f"{base}/{key}")
            item = {
                "key": key,
                "value": value + 1,
                "etag": headers["ETag"],
                "options": {"concurrency": "first-write"},
            }
            status, body, _ = await _request(mesh, "POST", base, json=[item])
            if status == 204:
                done += 1
            else:
                assert status == 409, body
                conflicts["409"] += 1

    await asyncio.gather(*(writer() for _ in range(writers)))
    _, total, _ = await _request(mesh, "GET", f"{base}/{key}")
    assert total == writers * increments, f"lost updates: {total} != {writers * increments} ({conflicts})"


async def test_api_token_is_enforced_through_envoy(mesh: DaprMesh) -> None:
    base = mesh.dapr_http("secure") + "/v1.0/state/memstate"
    status, body, _ = await _request(mesh, "GET", f"{base}/k")
    assert status == 401 and body["errorCode"] == "ERR_UNAUTHORIZED"
    status, _, _ = await _request(
        mesh, "POST", base, json=[{"key": "k", "value": 1}], headers={"dapr-api-token": TOKEN}
    )
    assert status == 204
    status, body, _ = await _request(mesh, "GET", f"{base}/k", headers={"dapr-api-token": TOKEN})
    assert status == 200 and body == 1
    status, _, _ = await _request(mesh, "GET", mesh.dapr_http("secure") + "/v1.0/healthz")
    assert status == 204  # health stays open, as in daprd


# ---- pub/sub ------------------------------------------------------------------------------------------
async def _publish(mesh: DaprMesh, topic: str, data: Any) -> None:
    url = mesh.dapr_http("alpha") + f"/v1.0/publish/events/{topic}"
    status, body, _ = await _request(mesh, "POST", url, json=data)
    assert status == 204, body


def _ok(rows: list[dict], route: str) -> list[dict]:
    return [r for r in rows if r["route"] == route and r["answered"] == 200]


async def test_publish_reaches_programmatic_and_declarative_subscribers(mesh: DaprMesh) -> None:
    await _publish(mesh, TOPICS["orders"], {"order": 1})
    await _publish(mesh, TOPICS["audit"], {"audit": 1})
    rows = await mesh.wait_received("beta", lambda rows: _ok(rows, "orders") and _ok(rows, "audit"))
    assert _ok(rows, "orders")[0]["data"] == {"order": 1}
    assert _ok(rows, "audit")[0]["data"] == {"audit": 1}
    assert _ok(rows, "orders")[0]["topic"] == TOPICS["orders"]
    # delivery went through B's Envoy: its inbound listener counted the requests
    async with mesh.session.get(
        f"http://127.0.0.1:{mesh.stack.proxy('beta').admin_port}/stats?filter=inbound.*downstream_rq_2xx&format=json"
    ) as resp:
        stats = await resp.json()
    assert any(s.get("value", 0) > 0 for s in stats["stats"]), stats


async def test_failed_delivery_is_retried_until_the_app_takes_it(mesh: DaprMesh) -> None:
    await _publish(mesh, TOPICS["flaky"], {"fail": 2, "n": RUN})
    rows = await mesh.wait_received("beta", lambda rows: _ok(rows, "flaky"))
    flaky = [r for r in rows if r["route"] == "flaky"]
    assert [r["answered"] for r in flaky] == [500, 500, 200]
    assert len({r["id"] for r in flaky}) == 1  # the same event, redelivered


async def test_poison_message_lands_in_the_dead_letter_topic(mesh: DaprMesh) -> None:
    await _publish(mesh, TOPICS["risky"], {"poison": True, "n": RUN})
    rows = await mesh.wait_received("beta", lambda rows: _ok(rows, "dlq"))
    assert _ok(rows, "dlq")[0]["data"] == {"poison": True, "n": RUN}
    assert not _ok(rows, "risky")


async def test_killed_capability_service_loses_nothing_with_redis_streams(mesh: DaprMesh) -> None:
    total = 60
    for i in range(total // 2):
        await _publish(mesh, TOPICS["bulk"], {"i": i, "sleep_ms": 200})
    await mesh.wait_received("beta", lambda rows: len(_ok(rows, "bulk")) >= 3)
    await mesh.stack.kill_capabilities("beta")  # SIGKILL mid-stream: in-flight events are never acked
    for i in range(total // 2, total):
        await _publish(mesh, TOPICS["bulk"], {"i": i, "sleep_ms": 200})
    await mesh.stack.start_capabilities(mesh.stack.proxy("beta"))
    rows = await mesh.wait_received(
        "beta", lambda rows: {r["data"]["i"] for r in _ok(rows, "bulk")} == set(range(total)), within_s=40
    )
    assert {r["data"]["i"] for r in _ok(rows, "bulk")} == set(range(total))


async def test_invocation_goes_through_the_internal_listener(mesh: DaprMesh) -> None:
    admin = mesh.stack.proxy("alpha").admin_port
    status, dump, _ = await _request(
        mesh, "GET", f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_listeners"
    )
    assert status == 200
    names = {c.get("name") for c in dump["configs"]}
    assert "outbound-internal" in names, names
