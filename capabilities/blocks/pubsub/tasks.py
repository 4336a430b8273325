"""Bounded background tasks for subscription loops: spawn handlers under a limit, cancel them all on stop."""

from __future__ import annotations

import asyncio
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
        """Cancel every task and wait for them; re-cancel stragglers (a task may be woken mid-cancel)."""
        me = asyncio.current_task()
        for _ in range(50):
            pending = [t for t in self._tasks if t is not me and not t.done()]
            if not pending:
                return
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.2)
