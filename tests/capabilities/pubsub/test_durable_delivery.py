"""Durable brokers through the whole path: a subscriber dies with un-acked messages and nothing is lost;
a broker that goes down gives 500s naming the component, and publishing recovers when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capability_testkit import component, need_server

from capabilities.delivery.http import manager_for

BROKERS = {
    "redis": (
        ("Redis", "127.0.0.1", 6379),
        {"redisHost": "127.0.0.1:6379", "processingTimeout": "300ms", "redeliverInterval": "200ms"},
    ),
    "jetstream": (
        ("NATS JetStream", "127.0.0.1", 4222),
        {"natsURL": "nats://127.0.0.1:4222", "ackWait": "1s"},
    ),
}


async def purge(kind: str, topic: str) -> None:
    with contextlib.suppress(Exception):
        if kind == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis()
            await client.delete(topic)
            await client.aclose()
        else:
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(f"mecha-{topic}")
            await nc.close()


async def started(make_sidecar: Any, app_id: str, docs: list[dict[str, Any]], app: Any = None) -> Any:
    client, runtime = await make_sidecar(docs, app_id=app_id, app_url=app.url() if app else None)
    assert not runtime.init_errors, runtime.init_errors
    if app is not None:
        manager = manager_for(runtime)
        assert manager is not None
        await asyncio.wait_for(manager.ready.wait(), 10)
    return client, runtime


@pytest.mark.backend
@pytest.mark.parametrize("kind", sorted(BROKERS))
async def test_killed_subscriber_loses_nothing(kind: str, make_sidecar: Any, fake_app: Any) -> None:
    server, metadata = BROKERS[kind]
    need_server(*server)
    topic, app_id = f"dur-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:6]}"
    docs = [component("orders", f"pubsub.{kind}", **metadata)]
    subs = [{"pubsubname": "orders", "topic": topic, "route": "/orders"}]
    try:
        broken_app = await fake_app(subs)
        broken_app.reply("/orders", *[(500, None)] * 1000)  # the app crashes on every event
        client_b, runtime_b = await started(make_sidecar, app_id, docs, broken_app)
        client_a, _ = await started(make_sidecar, "a", docs)
        for i in range(3):
            assert (await client_a.post(f"/v1.0/publish/orders/{topic}", json={"n": i})).status == 204
        await broken_app.wait_for(lambda: len(broken_app.received.get("/orders", [])) >= 3)
        await client_b.close()  # the subscriber dies with un-acked messages in flight
        await runtime_b.stop()
        for i in range(3, 5):  # and more arrive while it is down
            assert (await client_a.post(f"/v1.0/publish/orders/{topic}", json={"n": i})).status == 204

        healthy_app = await fake_app(subs)
        await started(make_sidecar, app_id, docs, healthy_app)

        def delivered() -> set[int]:
            return {e["data"]["n"] for e in healthy_app.received.get("/orders", [])}

        await healthy_app.wait_for(lambda: delivered() == {0, 1, 2, 3, 4}, limit_s=20)
    finally:
        await purge(kind, topic)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Any]:
    """A Redis of our own on a free port, which the test may stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
            subprocess.run(["sleep", "0.05"], check=False)
        raise RuntimeError(f"private redis on {port} did not start")

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    start()
    yield type("PrivateRedis", (), {"port": port, "start": staticmethod(start), "stop": staticmethod(stop)})
    stop()


@pytest.mark.backend
async def test_broker_down_gives_500_naming_the_component_then_recovers(
    make_sidecar: Any, private_redis: Any
) -> None:
    docs = [component("events", "pubsub.redis", redisHost=f"127.0.0.1:{private_redis.port}")]
    client, runtime = await started(make_sidecar, "a", docs)
    assert (await client.post("/v1.0/publish/events/t1", json={"ok": 1})).status == 204

    private_redis.stop()
    resp = await client.post("/v1.0/publish/events/t1", json={"ok": 2})
    assert resp.status == 500
    body = await resp.json()
    assert body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert "events" in body["message"] and "t1" in body["message"]

    private_redis.start()
    async with asyncio.timeout(10):
        while (await client.post("/v1.0/publish/events/t1", json={"ok": 3})).status != 204:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert runtime.component("pubsub", "events") is not None
