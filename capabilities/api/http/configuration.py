"""Configuration API: GET /v1.0[-alpha1]/configuration/{store}[?key=..], .../subscribe, .../{id}/unsubscribe
(both the stable and the alpha1 paths)."""

from __future__ import annotations

from aiohttp import web

from capabilities.api.http.common import empty, json_response, query_metadata
from capabilities.blocks.configuration.service import ConfigurationService


def add_routes(app: web.Application, service: ConfigurationService) -> None:
    async def get_items(request: web.Request) -> web.Response:
        keys = request.query.getall("key", [])
        items = await service.get(request.match_info["store"], keys, query_metadata(request))
        if not items:
            return empty()
        return json_response({k: v.to_json() for k, v in items.items()})

    async def subscribe(request: web.Request) -> web.Response:
        keys = request.query.getall("key", [])
        sub_id = await service.subscribe(request.match_info["store"], keys, query_metadata(request))
        return json_response({"id": sub_id})

    async def unsubscribe(request: web.Request) -> web.Response:
        await service.unsubscribe(request.match_info["store"], request.match_info["id"])
        return json_response({"ok": True})

    for version in ("v1.0", "v1.0-alpha1"):
        app.router.add_get(f"/{version}/configuration/{{store}}/subscribe", subscribe)
        app.router.add_get(f"/{version}/configuration/{{store}}/{{id}}/unsubscribe", unsubscribe)
        app.router.add_get(f"/{version}/configuration/{{store}}", get_items)
