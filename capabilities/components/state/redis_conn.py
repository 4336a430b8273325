"""A dedicated redis-py connection for the state store's hot commands (HGETALL, EVALSHA).

`Redis.execute_command` costs about as much Python per command as the socket I/O itself (issue #17): a pool
get and release under a lock, with a health check and observability hooks, a retry wrapper built per call,
and `asyncio.wait_for` (a task) around every write when `socket_timeout` is set. Here one redis-py
`Connection` of the store's own settings serves a command whenever it is free; a command that arrives while
it is busy (concurrent requests) goes through the client and its pool exactly as before. Only redis-py's
public API is used (`send_command`, `read_response`, `can_read`, its `Retry`): protocol, parser (hiredis),
AUTH/SELECT/TLS on (re)connect all stay redis-py's.

Same rules as the pool: before a command the connection is checked for a server-side close or stray data
(what `ConnectionPool.ensure_connection` does) and reconnected; a failure is retried by the client's own
`Retry` (`redisMaxRetries`), disconnecting first; the read timeout (`readTimeout`) bounds the write and the
read together with one `asyncio.timeout` instead of a `wait_for` task per write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class DedicatedConnection:
    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        self._timeout: float | None = kwargs.get("socket_timeout")
        # redis-py uses socket_timeout as the connect timeout when none is given: keep that before clearing it
        kwargs["socket_connect_timeout"] = kwargs.get("socket_connect_timeout") or self._timeout
        kwargs["socket_timeout"] = None
        self._client = client
        self._conn: Any = pool.connection_class(**kwargs)
        self._retry: Any = client.get_retry()
        self._busy = False

    async def close(self) -> None:
        await self._conn.disconnect()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        if self._busy:
            return dict(await self._client.hgetall(key))
        reply = await self._execute("HGETALL", key)
        if isinstance(reply, dict):  # RESP3 maps
            return reply
        pairs = iter(reply)
        return dict(zip(pairs, pairs, strict=True))

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        if self._busy:
            return await self._client.evalsha(sha, numkeys, *args)
        return await self._execute("EVALSHA", sha, numkeys, *args)

    async def _execute(self, *args: Any) -> Any:
        self._busy = True  # set before the first await: no other task can take the connection
        try:
            if self._retry is None:
                return await self._attempt(args)
            return await self._retry.call_with_retry(lambda: self._attempt(args), self._on_failure)
        finally:
            self._busy = False

    async def _attempt(self, args: tuple[Any, ...]) -> Any:
        conn = self._conn
        if conn.is_connected:
            try:
                stale = await conn.can_read()  # data nobody asked for, or the server closed it
            except (RedisConnectionError, OSError):
                stale = True
            if stale:
                await conn.disconnect()
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_command(*args)  # connects (AUTH, SELECT) when not connected
                return await conn.read_response()
        except TimeoutError:
            # redis-py disconnected the connection when the timeout cancelled it mid-command
            raise RedisTimeoutError(f"Timeout reading from {conn.host}:{conn.port}") from None

    async def _on_failure(self, _error: BaseException) -> None:
        await self._conn.disconnect()
