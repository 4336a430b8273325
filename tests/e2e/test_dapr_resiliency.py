"""Dapr Resiliency for service invocation through real Envoys: alpha calls beta and gamma on alpha's Dapr
listener; a Resiliency scoped to alpha targets beta (timeout, retry) and delta (circuit breaker); gamma
is the control without it.

The retry and the timeout are enforced by alpha's Envoy (xds/translate/resiliency.py): the test app's
/fail?code=500 fails (Envoy retries 5xx only; Istio's default mesh retry already covers 503) and /slow
answers after a delay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from dapr_e2e import AppSpec, DaprMesh, start_dapr_mesh, stop_dapr_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RESILIENCY = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Resiliency",
    "metadata": {"name": "beta-resiliency", "namespace": "default"},
    "spec": {
        "policies": {
            "timeouts": {"short": "500ms"},
            "retries": {"three": {"policy": "constant", "duration": "10ms", "maxRetries": 3}},
            "circuitBreakers": {"cb": {"trip": "consecutiveFailures >= 2", "timeout": "30s"}},
        },
        "targets": {
            "apps": {"beta": {"timeout": "short", "retry": "three"}, "delta": {"circuitBreaker": "cb"}}
        },
    },
    "scopes": ["alpha"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DaprMesh]:
    tmp = tmp_path_factory.mktemp("dapr-resiliency")
    mesh = await start_dapr_mesh([AppSpec(n) for n in ("alpha", "beta", "gamma", "delta")], tmp)
    try:
        yield mesh
    finally:
        await stop_dapr_mesh(mesh)


async def _invoke(mesh: DaprMesh, target: str, method: str) -> tuple[int, Any]:
    url = mesh.dapr_http("alpha") + f"/v1.0/invoke/{target}/method/{method}"
    async with mesh.session.get(url) as resp:
        text = await resp.text()
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, text


async def _apply_resiliency(mesh: DaprMesh) -> None:
    await mesh.apply([RESILIENCY], "resiliency")
    await mesh.stack.wait_synced()
    # Until alpha's Envoy has the new routes, /fail?code=500&n=2 answers 500 on its first attempt.
    for _ in range(100):
        status, body = await _invoke(mesh, "beta", f"fail?code=500&n=2&key=probe-{uuid.uuid4().hex[:8]}")
        if status == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the Resiliency never reached alpha's Envoy: last answer {status} {body}")


async def test_without_resiliency_the_failing_call_fails(mesh: DaprMesh) -> None:
    status, body = await _invoke(mesh, "beta", f"fail?code=500&n=2&key={uuid.uuid4().hex[:8]}")
    assert status == 500 and body["attempt"] == 1, body


async def test_constant_retry_makes_the_third_attempt_succeed(mesh: DaprMesh) -> None:
    await _apply_resiliency(mesh)
    status, body = await _invoke(mesh, "beta", f"fail?code=500&n=2&key={uuid.uuid4().hex[:8]}")
    assert status == 200 and body["attempt"] == 3, body  # beta saw three attempts


async def test_retries_stop_at_max_retries(mesh: DaprMesh) -> None:
    status, body = await _invoke(mesh, "beta", f"fail?code=500&n=10&key={uuid.uuid4().hex[:8]}")
    assert status == 500 and body["attempt"] == 4, body  # 1 try + maxRetries 3


async def test_timeout_answers_504_for_a_slow_endpoint(mesh: DaprMesh) -> None:
    status, _ = await _invoke(mesh, "beta", "slow?ms=2000")
    assert status == 504
    status, body = await _invoke(mesh, "beta", "slow?ms=10")
    assert status == 200 and body["slept_ms"] == 10


async def test_apps_the_resiliency_does_not_target_keep_failing(mesh: DaprMesh) -> None:
    status, body = await _invoke(mesh, "gamma", f"fail?code=500&n=2&key={uuid.uuid4().hex[:8]}")
    assert status == 500 and body["attempt"] == 1, body
    status, body = await _invoke(mesh, "gamma", "slow?ms=700")
    assert status == 200 and body["slept_ms"] == 700  # no 500ms timeout on gamma


async def test_circuit_breaker_opens_after_consecutive_failures(mesh: DaprMesh) -> None:
    status, body = await _invoke(mesh, "delta", "echo/closed")
    assert status == 200 and body["app"] == "delta", body
    for _ in range(2):  # trip: consecutiveFailures >= 2 -> delta's only endpoint is ejected for 30s
        status, _ = await _invoke(mesh, "delta", "status/500")
        assert status == 500
    status, body = await _invoke(mesh, "delta", "echo/open")
    assert status == 503, body  # the open breaker fails fast: no healthy upstream
    status, body = await _invoke(mesh, "gamma", "echo/other")
    assert status == 200 and body["app"] == "gamma", body  # other targets are unaffected
