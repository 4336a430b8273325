"""Sequencer API (Mecha extension): POST /v1.0-alpha1/sequencer/{store} {"key", "options": {"increment"}}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from capabilities.api.http.common import json_response, malformed, read_json, require_object
from capabilities.blocks.sequencer.service import SequencerService

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def add_routes(app: web.Application, runtime: Runtime) -> None:
    service = SequencerService(runtime)

    async def next_id(request: web.Request) -> web.Response:
        body = require_object(await read_json(request), "body")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise malformed('options: expected {"increment": "WEAK"|"STRONG"}')
        value = await service.next_id(request.match_info["store"], body.get("key"), options.get("increment"))
        return json_response({"next_id": str(value)})

    app.router.add_post("/v1.0-alpha1/sequencer/{store}", next_id)
