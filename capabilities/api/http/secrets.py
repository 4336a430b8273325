"""Secrets API: GET /v1.0/secrets/{store}/{key}, GET /v1.0/secrets/{store}/bulk."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from capabilities.api.http.common import empty, json_response, query_metadata
from capabilities.blocks.secretstores.service import SecretsService

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def add_routes(app: web.Application, runtime: Runtime) -> None:
    service = SecretsService(runtime)

    async def get_secret(request: web.Request) -> web.Response:
        data = await service.get(
            request.match_info["store"], request.match_info["key"], query_metadata(request)
        )
        return json_response(data) if data else empty()

    async def bulk(request: web.Request) -> web.Response:
        return json_response(await service.bulk(request.match_info["store"], query_metadata(request)))

    app.router.add_get("/v1.0/secrets/{store}/bulk", bulk)
    app.router.add_get("/v1.0/secrets/{store}/{key}", get_secret)
