"""The Redis state store's dedicated connection (issue #17: redis-py's per-command pool and wrapper cost as
much CPU as the I/O). Sequential gets and saves skip `execute_command`; concurrent ones share the pool and
all stay correct; a connection the server closed is replaced before use, even with redisMaxRetries=0; the
read timeout and the retries still apply."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis_state_kit import needs_redis, redis_store

from capabilities.blocks.state.contract import DeleteRequest, SetRequest


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Any]:
    s = await redis_store()
    yield s
    await s.close()


def key() -> str:
    return f"test-conn-{uuid.uuid4().hex}"


def count_client_commands(s: Any) -> list[tuple[Any, ...]]:
    """Record every command that goes through the client's execute_command (the pool path)."""
    calls: list[tuple[Any, ...]] = []
    original = s._client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        calls.append(args)
        return await original(*args, **options)

    s._client.execute_command = counting
    return calls


@needs_redis
async def test_sequential_gets_and_saves_skip_the_pool(store: Any) -> None:
    k = key()
    await store.set(SetRequest(key=k, value=b'"a"'))  # loads the script (once, through the client)
    calls = count_client_commands(store)
    for n in range(20):
        await store.set(SetRequest(key=k, value=f'"{n}"'.encode()))
        item = await store.get(k)
        assert (item.value, item.etag) == (f'"{n}"'.encode(), str(n + 2))
    assert calls == []
    await store.delete(DeleteRequest(key=k))


@needs_redis
async def test_concurrent_commands_share_the_pool_and_stay_correct(store: Any) -> None:
    keys = [key() for _ in range(40)]
    calls = count_client_commands(store)
    await asyncio.gather(*(store.set(SetRequest(key=k, value=f'"{k}"'.encode())) for k in keys))
    items = await asyncio.gather(*(store.get(k) for k in keys))
    assert [(i.value, i.etag) for i in items] == [(f'"{k}"'.encode(), "1") for k in keys]
    assert calls, "concurrent commands went through the pool too"
    for k in keys:
        await store.delete(DeleteRequest(key=k))


@needs_redis
async def test_a_connection_the_server_closed_is_replaced_without_retries() -> None:
    s = await redis_store({"redisMaxRetries": "0"})
    try:
        k = key()
        await s.set(SetRequest(key=k, value=b"1"))
        await s.set(SetRequest(key=k, value=b"2"))  # the dedicated connection now exists
        # The server closes the dedicated connection (as on a Redis restart or its idle timeout).
        connection_id = await s._hot._execute("CLIENT", "ID")
        assert await s._client.execute_command("CLIENT", "KILL", "ID", connection_id) == 1
        await asyncio.sleep(0.1)  # the close reaches this process
        item = await s.get(k)
        assert (item.value, item.etag) == (b"2", "2")
        await s.set(SetRequest(key=k, value=b"3"))
        assert (await s.get(k)).etag == "3"
        await s.delete(DeleteRequest(key=k))
    finally:
        await s.close()


async def _silent_redis() -> tuple[asyncio.Server, int]:
    """Answers the connection handshake and PING (the store's init check), nothing else: every other command
    hangs. Commands are RESP arrays of bulk strings: *N, then $len and the word, N times."""
    replies = {b"HELLO": b"-ERR unknown command 'HELLO'\r\n", b"CLIENT": b"+OK\r\n", b"PING": b"+PONG\r\n"}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                lines, i = data.split(b"\r\n"), 0
                while i < len(lines):
                    if lines[i].startswith(b"*"):
                        writer.write(replies.get(lines[i + 2].upper(), b""))
                        i += 1 + 2 * int(lines[i][1:])
                    else:
                        i += 1
        except asyncio.CancelledError:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_the_read_timeout_and_retries_still_apply() -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    server, port = await _silent_redis()
    meta = {"redisHost": f"127.0.0.1:{port}", "readTimeout": "0.2s", "redisMaxRetries": "1"}
    s = await redis_store(meta)
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="Timeout reading"):
            await s.get("k")
        assert 0.4 <= time.monotonic() - started < 3  # two attempts of 0.2 s (one retry), plus its back-off
        with pytest.raises(RedisTimeoutError):
            await s.set(SetRequest(key="k", value=b"1"))
    finally:
        await s.close()
        server.close()
