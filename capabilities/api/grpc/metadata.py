"""GetMetadata / SetMetadata / Shutdown over gRPC.

GetMetadata converts the same JSON document the HTTP `GET /v1.0/metadata` returns into the proto, so both
APIs always agree; gRPC-only facts (streaming subscriptions, gRPC app protocol) are added on top.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import metadata_pb2
from google.protobuf import empty_pb2

from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import dapr_errors, invalid_argument

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

SUB_TYPES = {
    "DECLARATIVE": metadata_pb2.PubsubSubscriptionType.DECLARATIVE,
    "PROGRAMMATIC": metadata_pb2.PubsubSubscriptionType.PROGRAMMATIC,
    "STREAMING": metadata_pb2.PubsubSubscriptionType.STREAMING,
}


def metadata_document(runtime: Runtime) -> dict[str, Any]:
    """The HTTP metadata API's document: both APIs describe the runtime from the same function."""
    from capabilities.api.http.metadata import metadata_document as http_document

    return http_document(runtime)


def _subscription(sub: dict[str, Any]) -> metadata_pb2.PubsubSubscription:
    rules = sub.get("rules") or []
    if isinstance(rules, dict):  # {"rules": [...]} shape
        rules = rules.get("rules") or []
    return metadata_pb2.PubsubSubscription(
        pubsub_name=str(sub.get("pubsubname", "")),
        topic=str(sub.get("topic", "")),
        metadata={str(k): str(v) for k, v in (sub.get("metadata") or {}).items()},
        rules=metadata_pb2.PubsubSubscriptionRules(
            rules=[
                metadata_pb2.PubsubSubscriptionRule(
                    match=str(r.get("match", "")), path=str(r.get("path", ""))
                )
                for r in rules
                if isinstance(r, dict)
            ]
        ),
        dead_letter_topic=str(sub.get("deadLetterTopic", "") or ""),
        type=SUB_TYPES.get(str(sub.get("type", "")).upper(), metadata_pb2.PubsubSubscriptionType.UNKNOWN),
    )


def to_proto(doc: dict[str, Any], *, app_protocol: str | None = None) -> metadata_pb2.GetMetadataResponse:
    conn = doc.get("appConnectionProperties") or {}
    return metadata_pb2.GetMetadataResponse(
        id=str(doc.get("id", "")),
        runtime_version=str(doc.get("runtimeVersion", "")),
        enabled_features=[str(f) for f in doc.get("enabledFeatures") or []],
        registered_components=[
            metadata_pb2.RegisteredComponents(
                name=str(c.get("name", "")),
                type=str(c.get("type", "")),
                version=str(c.get("version", "")),
                capabilities=[str(x) for x in c.get("capabilities") or []],
            )
            for c in doc.get("components") or []
        ],
        extended_metadata={str(k): str(v) for k, v in (doc.get("extended") or {}).items()},
        subscriptions=[_subscription(s) for s in doc.get("subscriptions") or []],
        http_endpoints=[
            metadata_pb2.MetadataHTTPEndpoint(name=str(e.get("name", "")))
            for e in doc.get("httpEndpoints") or []
        ],
        app_connection_properties=metadata_pb2.AppConnectionProperties(
            port=int(conn.get("port") or 0),
            protocol=app_protocol or str(conn.get("protocol", "")),
            channel_address=str(conn.get("channelAddress", "")),
            max_concurrency=int(conn.get("maxConcurrency") or 0),
        ),
    )


class MetadataApi(ApiBase):
    active_streams: dict[int, tuple[str, str]]  # provided by StreamingSubscriptionsApi
    app_protocol: str  # provided by DaprApi

    @dapr_errors
    async def GetMetadata(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> metadata_pb2.GetMetadataResponse:
        response = to_proto(metadata_document(self.runtime), app_protocol=self.app_protocol)
        # a gRPC app's ListTopicSubscriptions are in the document (HTTP and gRPC tell the same)
        for pubsub_name, topic in sorted(set(getattr(self, "active_streams", {}).values())):
            response.subscriptions.append(
                metadata_pb2.PubsubSubscription(
                    pubsub_name=pubsub_name, topic=topic, type=SUB_TYPES["STREAMING"]
                )
            )
        return response

    @dapr_errors
    async def SetMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        if not request.key:
            raise invalid_argument("ERR_MALFORMED_REQUEST", "metadata key is empty")
        self.runtime.extended_metadata[request.key] = request.value
        return empty_pb2.Empty()

    @dapr_errors
    async def Shutdown(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        # Answer first, then let the process wind down (daprd replies before shutting down too).
        asyncio.get_running_loop().call_soon(self.runtime.request_shutdown)
        log.info("shutdown requested over gRPC")
        return empty_pb2.Empty()
