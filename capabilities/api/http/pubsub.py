"""Pub/sub HTTP API: POST|PUT /v1.0/publish/{pubsub}/{topic...} and the bulk publish routes.

Only maps HTTP to the block service (capabilities.blocks.pubsub.service) and back; Dapr status codes:
204 published, 400 malformed / bad metadata, 404 unknown pubsub or empty topic, 500 broker failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from capabilities import strict_json
from capabilities.api.http.common import empty, json_response, query_metadata
from capabilities.blocks.pubsub import errors, service
from capabilities.blocks.pubsub.contract import PubSub

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def _pubsub(runtime: Runtime, name: str) -> PubSub:
    if not name:
        raise errors.pubsub_name_empty()
    return runtime.component("pubsub", name)


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def publish(request: web.Request) -> web.Response:
        name = request.match_info["pubsub"]
        topic = request.match_info.get("topic", "")
        pubsub = _pubsub(runtime, name)
        req = service.PublishRequest(
            pubsub_name=name,
            topic=topic,
            data=await request.read(),
            content_type=request.headers.get("Content-Type", ""),
            metadata=query_metadata(request),
            source=runtime.app_id,
            traceparent=request.headers.get("traceparent", ""),
            tracestate=request.headers.get("tracestate", ""),
        )
        await service.publish(pubsub, req)
        return empty()

    async def bulk_publish(request: web.Request) -> web.Response:
        name = request.match_info["pubsub"]
        topic = request.match_info.get("topic", "")
        pubsub = _pubsub(runtime, name)
        raw = await request.read()
        try:
            body = strict_json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.malformed_events(name, topic, f"body is not valid JSON: {exc}") from None
        entries = service.parse_bulk_entries(name, topic, body)
        failed = await service.bulk_publish(
            pubsub,
            pubsub_name=name,
            topic=topic,
            entries=entries,
            metadata=query_metadata(request),
            source=runtime.app_id,
            traceparent=request.headers.get("traceparent", ""),
            tracestate=request.headers.get("tracestate", ""),
        )
        if not failed:
            return empty()
        return json_response(
            {
                "failedEntries": [{"entryId": k, "error": v} for k, v in sorted(failed.items())],
                "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
            },
            status=500,
        )

    async def topic_missing(request: web.Request) -> web.Response:
        raise errors.topic_empty(request.match_info["pubsub"])

    for method in ("POST", "PUT"):
        app.router.add_route(method, "/v1.0/publish/{pubsub}/{topic:.+}", publish)
        app.router.add_route(method, "/v1.0/publish/{pubsub}", topic_missing)
        app.router.add_route(method, "/v1.0/publish/{pubsub}/", topic_missing)
        for version in ("v1.0-alpha1", "v1.0"):
            app.router.add_route(method, f"/{version}/publish/bulk/{{pubsub}}/{{topic:.+}}", bulk_publish)
