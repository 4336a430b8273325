"""dapr_http_server_request_count: one count per HTTP API response, by route template and status, whatever
answered it (handler, token check, router miss, error mapping); /metrics itself is not counted."""

from __future__ import annotations

from typing import Any

from capability_testkit import component

from capabilities.metrics import http_requests

STATE = component("statestore", "state.in-memory")
KEY_ROUTE = "/v1.0/state/{store}/{key}"
TOKEN = {"dapr-api-token": "s3cret"}


async def test_each_response_is_counted_by_route_and_status(make_sidecar: Any) -> None:
    client, runtime = await make_sidecar([STATE], api_token="s3cret")
    app = runtime.app_id

    def count(method: str, path: str, status: int) -> float:
        return http_requests.value(app, method, path, str(status))

    cases: list[tuple[str, str, dict[str, str], str, int]] = [
        ("POST", "/v1.0/state/statestore", TOKEN, "/v1.0/state/{store}", 204),
        ("GET", "/v1.0/state/statestore/k1", TOKEN, KEY_ROUTE, 200),
        ("GET", "/v1.0/state/statestore/nokey", TOKEN, KEY_ROUTE, 204),
        ("GET", "/v1.0/state/statestore/k1", {}, KEY_ROUTE, 401),  # token check
        ("GET", "/v1.0/state/nostore/k1", TOKEN, KEY_ROUTE, 400),  # DaprError from the handler
        ("GET", "/v1.0/no-such-api", TOKEN, "", 404),  # router miss: no template
        ("PATCH", "/v1.0/state/statestore/k1", TOKEN, "", 405),
        ("GET", "/v1.0/healthz", {}, "/v1.0/healthz", 204),
    ]
    for method, path, headers, route, status in cases:
        before = count(method, route, status)
        body = [{"key": "k1", "value": 1}] if method == "POST" else None
        resp = await client.request(method, path, headers=headers, json=body)
        assert resp.status == status, (method, path, await resp.text())
        assert count(method, route, status) == before + 1, (method, path, status)

    scraped_before = sum(v for k, v in http_requests._values.items() if k[0] == app)
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert f'dapr_http_server_request_count{{app_id="{app}",method="GET",path="{KEY_ROUTE}"' in text
    assert sum(v for k, v in http_requests._values.items() if k[0] == app) == scraped_before
