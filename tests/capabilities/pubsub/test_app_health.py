"""App health as daprd: an unhealthy app gets no pub/sub messages and no input-binding events until it is
healthy again, none are lost (real Redis); each transition is reported with the workload credential; on
SIGTERM the endpoint is reported draining and deliveries stop."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from capability_testkit import component, need_server
from test_durable_delivery import purge, started

from capabilities.apphealth import (
    AppHealth,
    AppHealthConfig,
    WorkloadReporter,
    add_arguments,
    config_from_args,
    drain,
)
from capabilities.delivery.http import manager_for

REDIS = {"redisHost": "127.0.0.1:6379", "processingTimeout": "300ms", "redeliverInterval": "200ms"}


class ControlPlaneStub:
    """Records what POST /api/v1/workloads/health receives (the real handler is tested in tests/xds)."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.reports.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"changed": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/v1/workloads/health", self.handle)
        self.server = TestServer(app)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")


@pytest.mark.backend
async def test_unhealthy_app_gets_no_messages_until_healthy_and_none_are_lost(
    make_sidecar: Any, fake_app: Any, tmp_path: Path
) -> None:
    need_server("Redis", "127.0.0.1", 6379)
    topic, app_id = f"health-{uuid.uuid4().hex[:8]}", f"h-{uuid.uuid4().hex[:6]}"
    docs = [component("orders", "pubsub.redis", **REDIS)]
    stub = ControlPlaneStub()
    credential = tmp_path / "credential.jwt"
    credential.write_text("the-workload-token\n")
    try:
        app = await fake_app([{"pubsubname": "orders", "topic": topic, "route": "/orders"}])
        _client_sub, runtime = await started(make_sidecar, app_id, docs, app)
        client_pub, _ = await started(make_sidecar, "publisher", docs)
        reporter = WorkloadReporter(await stub.start(), credential)
        health = AppHealth(runtime, AppHealthConfig(path="/healthz", threshold=2), reporter)

        def delivered() -> list[int]:
            return [e["data"]["n"] for e in app.received.get("/orders", [])]

        async def publish(numbers: range) -> None:
            for n in numbers:
                assert (await client_pub.post(f"/v1.0/publish/orders/{topic}", json={"n": n})).status == 204

        await health.check_once()  # first probe: healthy, reported
        await publish(range(0, 5))
        await app.wait_for(lambda: len(delivered()) == 5)

        app.reply("/healthz", (503, None), (503, None))
        await health.check_once()
        assert health.healthy is True  # one failure is below the threshold
        await health.check_once()
        assert health.healthy is False
        manager = manager_for(runtime)
        assert manager is not None and manager.paused and not manager.active
        await publish(range(5, 10))
        await asyncio.sleep(1.5)  # several redeliver intervals: a paused subscriber pulls nothing
        assert sorted(delivered()) == list(range(5))

        await health.check_once()  # /healthz answers 200 again
        assert health.healthy is True and not manager.paused
        await app.wait_for(lambda: len(delivered()) >= 10, limit_s=20)
        await asyncio.sleep(0.5)  # a duplicate would arrive in this window
        assert sorted(delivered()) == list(range(10)), "every message exactly once"
        assert [r[1].get("healthy") for r in stub.reports] == [True, False, True]
        assert all(auth == "Bearer the-workload-token" for auth, _ in stub.reports)
        assert "2 failed probes" in stub.reports[1][1]["message"]

        await drain(runtime, reporter)  # SIGTERM: reported draining, no more pulling
        assert stub.reports[-1][1] == {"draining": True}
        assert manager.paused and not manager.active
        await publish(range(10, 12))
        await asyncio.sleep(1.0)
        assert sorted(delivered()) == list(range(10))
    finally:
        if stub.server is not None:
            await stub.server.close()
        await purge("redis", topic)


def test_daprd_flags_and_env() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([]), env={}) is None
    on = parser.parse_args(["--enable-app-health-check", "--app-health-probe-timeout", "250"])
    assert config_from_args(on, env={}) == AppHealthConfig("/healthz", 5.0, 0.25, 3)
    env = {"APP_HEALTH_CHECK": "1", "APP_HEALTH_CHECK_PATH": "/ready", "APP_HEALTH_THRESHOLD": "5"}
    assert config_from_args(parser.parse_args([]), env=env) == AppHealthConfig("/ready", 5.0, 0.5, 5)
    with pytest.raises(ValueError, match="app-health-check-path"):
        config_from_args(
            parser.parse_args(["--enable-app-health-check", "--app-health-check-path", "x"]), env={}
        )
    with pytest.raises(ValueError, match="APP_HEALTH_PROBE_INTERVAL"):
        config_from_args(
            parser.parse_args([]), env={"APP_HEALTH_CHECK": "1", "APP_HEALTH_PROBE_INTERVAL": "x"}
        )


async def test_reporter_only_for_a_credential_naming_a_workload_group(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from capabilities.apphealth import reporter_for
    from xds.identity.credential import CredentialIssuer

    issuer = CredentialIssuer(Ed25519PrivateKey.generate())
    plain, _ = issuer.issue("reviews-v1", "default", ["reviews"])
    grouped, _ = issuer.issue(
        "reviews-v1", "default", ["reviews"], workload_group="reviews", addresses=["10.0.0.1"]
    )
    (tmp_path / "plain.jwt").write_text(plain)
    (tmp_path / "grouped.jwt").write_text(grouped)
    assert reporter_for(None, str(tmp_path / "grouped.jwt")) is None
    reporter = reporter_for("http://127.0.0.1:15010/", str(tmp_path / "grouped.jwt"))
    assert reporter is not None and reporter.url == "http://127.0.0.1:15010/api/v1/workloads/health"
    # nothing listens there: a report is attempted (and fails) only for the credential naming a group
    assert await reporter.report(healthy=True) is False
    plain_reporter = reporter_for("http://127.0.0.1:15010", str(tmp_path / "plain.jwt"))
    assert plain_reporter is not None
    assert await plain_reporter.report(healthy=True) is True  # no entry to report on: nothing sent


@pytest.mark.backend
async def test_unhealthy_app_gets_no_input_binding_events_until_healthy(
    make_sidecar: Any, fake_app: Any
) -> None:
    """Input bindings pause as subscriptions do: events stay in the RabbitMQ queue, none lost, none twice."""
    need_server("RabbitMQ", "127.0.0.1", 5672)
    queue = f"bhealth-{uuid.uuid4().hex[:8]}"
    amqp = "amqp://guest:guest@127.0.0.1:5672/"
    docs = [component("jobs", "bindings.rabbitmq", host=amqp, queueName=queue)]
    try:
        app = await fake_app()
        app.reply("/jobs")  # the app reads the binding (OPTIONS /jobs answers 200)
        _client, runtime = await started(make_sidecar, f"b-{uuid.uuid4().hex[:6]}", docs, app)
        manager = manager_for(runtime)
        assert manager is not None and "jobs" in manager.bindings.reading
        sender, _ = await started(make_sidecar, "sender", docs)
        health = AppHealth(runtime, AppHealthConfig(path="/healthz", threshold=1))

        def received() -> list[int]:
            return [body["n"] for body in app.received.get("/jobs", [])]

        async def send(numbers: range) -> None:
            for n in numbers:
                body = {"operation": "create", "data": {"n": n}}
                assert (await sender.post("/v1.0/bindings/jobs", json=body)).status in (200, 204)

        await health.check_once()
        await send(range(0, 4))
        await app.wait_for(lambda: len(received()) == 4)

        app.reply("/healthz", (500, None))
        await health.check_once()
        assert health.healthy is False and manager.paused and not manager.bindings.reading
        await send(range(4, 8))
        await asyncio.sleep(1.0)
        assert sorted(received()) == list(range(4)), "a paused app reads no binding events"

        await health.check_once()
        assert health.healthy is True and "jobs" in manager.bindings.reading
        await app.wait_for(lambda: len(received()) >= 8, limit_s=20)
        await asyncio.sleep(0.5)
        assert sorted(received()) == list(range(8)), "every event exactly once"
    finally:
        await _delete_queue(queue)


async def _delete_queue(queue: str) -> None:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
