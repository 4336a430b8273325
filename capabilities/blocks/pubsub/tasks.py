"""Bounded background tasks for subscription loops: spawn handlers under a limit, cancel them all on stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BoundedTasks:
    def __init__(self, limit: int, name: str):
        self._limit = asyncio.Semaphore(max(1, limit))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._name = name

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A long-running task (read loop) cancelled by stop(); not counted against the limit."""
        task = asyncio.create_task(coro, name=self._name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run coro as a task once a slot is free (back-pressure for the read loop)."""
        await self._limit.acquire()
        task = asyncio.create_task(coro, name=self._name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self._limit.release()

        task.add_done_callback(done)

    async def stop(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
