"""A Redis that dies and comes back: 500 naming the component while down, recovery afterwards."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from capability_testkit import component


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - polls/spawns outside asyncio's view
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc
        except OSError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.backend
async def test_redis_outage_and_recovery(make_sidecar: Any, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary is not installed")
    port = free_port()
    proc = await start_redis(port, tmp_path)
    try:
        docs = [component("redis-1", "state.redis", redisHost=f"127.0.0.1:{port}", dialTimeout="1s")]
        client, _ = await make_sidecar(docs)
        assert (await client.post("/v1.0/state/redis-1", json=[{"key": "k", "value": 1}])).status == 204

        stop(proc)
        down = await client.get("/v1.0/state/redis-1/k")
        body = await down.json()
        assert down.status == 500 and body["errorCode"] == "ERR_STATE_GET"
        assert (
            "redis-1" in body["message"] and "onnect" in body["message"]
        )  # "Connection refused"/"connecting"
        save = await client.post("/v1.0/state/redis-1", json=[{"key": "k", "value": 2}])
        assert save.status == 500 and (await save.json())["errorCode"] == "ERR_STATE_SAVE"

        proc = await start_redis(port, tmp_path)  # same port, empty data set
        async with asyncio.timeout(10):
            while (await client.post("/v1.0/state/redis-1", json=[{"key": "k", "value": 3}])).status != 204:  # noqa: ASYNC110 - polls/spawns outside asyncio's view
                await asyncio.sleep(0.1)
        got = await client.get("/v1.0/state/redis-1/k")
        assert got.status == 200 and await got.json() == 3
    finally:
        stop(proc)
