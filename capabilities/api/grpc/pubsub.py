"""PublishEvent and BulkPublishEvent(Alpha1): thin adapters over capabilities.blocks.pubsub.service."""

from __future__ import annotations

from typing import Any

import grpc
from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import empty_pb2

from capabilities import strict_json
from capabilities.api.grpc.base import ApiBase, trace_headers
from capabilities.api.grpc.errors import dapr_errors
from capabilities.blocks.pubsub import envelope, errors, service
from capabilities.blocks.pubsub.contract import PubSub


def bulk_event_value(raw: bytes, content_type: str) -> Any:
    """A gRPC bulk entry carries bytes; the block service takes the JSON value HTTP would have sent."""
    if envelope.is_json_content_type(content_type) or envelope.is_cloudevent_content_type(content_type):
        try:
            return strict_json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            pass
    return raw.decode("utf-8", "replace")


class PubSubApi(ApiBase):
    def _pubsub(self, name: str) -> PubSub:
        if not name:
            raise errors.pubsub_name_empty()
        return self.runtime.component("pubsub", name)

    @dapr_errors
    async def PublishEvent(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        pubsub = self._pubsub(request.pubsub_name)
        traceparent, tracestate = trace_headers(context)
        await service.publish(
            pubsub,
            service.PublishRequest(
                pubsub_name=request.pubsub_name,
                topic=request.topic,
                data=request.data,
                content_type=request.data_content_type,
                metadata=dict(request.metadata),
                source=self.runtime.app_id,
                traceparent=traceparent,
                tracestate=tracestate,
            ),
        )
        return empty_pb2.Empty()

    @dapr_errors
    async def BulkPublishEvent(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        pubsub = self._pubsub(request.pubsub_name)
        body = [
            {
                "entryId": entry.entry_id,
                "event": bulk_event_value(entry.event, entry.content_type or "application/json"),
                "contentType": entry.content_type,
                "metadata": dict(entry.metadata),
            }
            for entry in request.entries
        ]
        entries = service.parse_bulk_entries(request.pubsub_name, request.topic, body)
        traceparent, tracestate = trace_headers(context)
        failed = await service.bulk_publish(
            pubsub,
            pubsub_name=request.pubsub_name,
            topic=request.topic,
            entries=entries,
            metadata=dict(request.metadata),
            source=self.runtime.app_id,
            traceparent=traceparent,
            tracestate=tracestate,
        )
        return pubsub_pb2.BulkPublishResponse(
            failedEntries=[
                pubsub_pb2.BulkPublishResponseFailedEntry(entry_id=entry_id, error=error)
                for entry_id, error in sorted(failed.items())
            ]
        )

    async def BulkPublishEventAlpha1(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)
