"""Lock API (alpha1): POST /v1.0-alpha1/lock/{store}, POST /v1.0-alpha1/unlock/{store}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from capabilities.api.http.common import json_response, read_json, require_object
from capabilities.blocks.lock.service import LockService

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def add_routes(app: web.Application, runtime: Runtime) -> None:
    service = LockService(runtime)

    async def lock(request: web.Request) -> web.Response:
        body = require_object(await read_json(request), "body")
        ok = await service.try_lock(
            request.match_info["store"],
            body.get("resourceId"),
            body.get("lockOwner"),
            body.get("expiryInSeconds"),
        )
        return json_response({"success": ok})

    async def unlock(request: web.Request) -> web.Response:
        body = require_object(await read_json(request), "body")
        status = await service.unlock(
            request.match_info["store"], body.get("resourceId"), body.get("lockOwner")
        )
        return json_response({"status": int(status)})

    app.router.add_post("/v1.0-alpha1/lock/{store}", lock)
    app.router.add_post("/v1.0-alpha1/unlock/{store}", unlock)
