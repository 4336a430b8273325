"""TryLockAlpha1 / UnlockAlpha1 over gRPC: adapters over capabilities.blocks.lock.service.

A client that cancels a TryLock mid-flight never learns whether it got the lock, so it could never release
it: when the cancelled attempt did acquire the lock, it is released at once (no leaked locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import lock_pb2

from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import dapr_errors
from capabilities.blocks.lock.service import LockService

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)


class LockApi(ApiBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.locks = LockService(runtime)
        self._releases: set[asyncio.Task[None]] = set()
        self.released_after_cancel = 0  # observability/tests

    @dapr_errors
    async def TryLockAlpha1(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> lock_pb2.TryLockResponse:
        attempt = asyncio.ensure_future(
            self.locks.try_lock(
                request.store_name, request.resource_id, request.lock_owner, request.expiry_in_seconds
            )
        )
        try:
            acquired = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            task = asyncio.create_task(self._release_if_acquired(attempt, request))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
            raise
        return lock_pb2.TryLockResponse(success=acquired)

    async def _release_if_acquired(self, attempt: asyncio.Future[bool], request: Any) -> None:
        with contextlib.suppress(Exception):
            if await attempt:
                await self.locks.unlock(request.store_name, request.resource_id, request.lock_owner)
                self.released_after_cancel += 1
                log.info(
                    "released lock %s: its TryLock call was cancelled by the client", request.resource_id
                )

    @dapr_errors
    async def UnlockAlpha1(self, request: Any, context: grpc.aio.ServicerContext) -> lock_pb2.UnlockResponse:
        status = await self.locks.unlock(request.store_name, request.resource_id, request.lock_owner)
        return lock_pb2.UnlockResponse(status=lock_pb2.UnlockResponse.Status.ValueType(status))

    async def close_locks(self) -> None:
        for task in list(self._releases):
            with contextlib.suppress(Exception):
                await task
