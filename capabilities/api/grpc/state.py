"""State API over gRPC: proto <-> capabilities.blocks.state.service.StateService (same code as HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2
from google.protobuf import empty_pb2

from capabilities import strict_json
from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import dapr_errors, invalid_argument
from capabilities.blocks.state.contract import DeleteRequest, Operation, SetRequest
from capabilities.blocks.state.query import parse_query
from capabilities.blocks.state.service import StateService
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

FIRST_WRITE = common_pb2.StateOptions.StateConcurrency.CONCURRENCY_FIRST_WRITE


def ttl_seconds(metadata: dict[str, str]) -> int | None:
    """metadata.ttlInSeconds: an integer; -1 = never expire (Dapr's rule for every state API)."""
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise invalid_argument(
            "ERR_MALFORMED_REQUEST", f"metadata.ttlInSeconds: {raw!r} is not an integer"
        ) from None
    if ttl < -1:
        raise invalid_argument("ERR_MALFORMED_REQUEST", f"metadata.ttlInSeconds: {ttl} must be -1 or more")
    return ttl


def set_request(item: common_pb2.StateItem) -> SetRequest:
    metadata = dict(item.metadata)
    return SetRequest(
        key=item.key,
        value=item.value,
        etag=item.etag.value if item.HasField("etag") and item.etag.value else None,
        first_write=item.options.concurrency == FIRST_WRITE,
        ttl_seconds=ttl_seconds(metadata),
        metadata=metadata,
    )


def delete_request(
    key: str, etag: common_pb2.Etag | None, options: Any, metadata: dict[str, str]
) -> DeleteRequest:
    return DeleteRequest(
        key=key,
        etag=etag.value if etag is not None and etag.value else None,
        first_write=options.concurrency == FIRST_WRITE,
        metadata=metadata,
    )


class StateApi(ApiBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.state = StateService(runtime)

    @dapr_errors
    async def GetState(self, request: Any, context: grpc.aio.ServicerContext) -> state_pb2.GetStateResponse:
        item = await self.state.get(request.store_name, request.key)
        if item is None:
            return state_pb2.GetStateResponse()  # daprd: an empty response, not an error, for a missing key
        return state_pb2.GetStateResponse(data=item.value, etag=item.etag)

    @dapr_errors
    async def GetBulkState(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> state_pb2.GetBulkStateResponse:
        parallelism = request.parallelism if request.parallelism > 0 else 10
        items = await self.state.bulk_get(request.store_name, list(request.keys), parallelism)
        return state_pb2.GetBulkStateResponse(
            items=[
                state_pb2.BulkStateItem(
                    key=bulk.key,
                    data=bulk.item.value if bulk.item else b"",
                    etag=bulk.item.etag if bulk.item else "",
                    error=bulk.error or "",
                )
                for bulk in items
            ]
        )

    @dapr_errors
    async def SaveState(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self.state.save(request.store_name, [set_request(item) for item in request.states])
        return empty_pb2.Empty()

    @dapr_errors
    async def DeleteState(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        etag = request.etag if request.HasField("etag") else None
        await self.state.delete(
            request.store_name, delete_request(request.key, etag, request.options, dict(request.metadata))
        )
        return empty_pb2.Empty()

    @dapr_errors
    async def DeleteBulkState(self, request: Any, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        for item in request.states:
            etag = item.etag if item.HasField("etag") else None
            await self.state.delete(
                request.store_name, delete_request(item.key, etag, item.options, dict(item.metadata))
            )
        return empty_pb2.Empty()

    @dapr_errors
    async def ExecuteStateTransaction(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        operations: list[Operation] = []
        for i, op in enumerate(request.operations):
            kind = op.operationType.lower()
            if kind == "upsert":
                operations.append(set_request(op.request))
            elif kind == "delete":
                etag = op.request.etag if op.request.HasField("etag") else None
                operations.append(
                    delete_request(op.request.key, etag, op.request.options, dict(op.request.metadata))
                )
            else:
                raise DaprError(
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    f"operation type {op.operationType!r} not supported (operations[{i}]: upsert or delete)",
                    400,
                    "UNIMPLEMENTED",
                )
        await self.state.transact(request.storeName, operations)
        return empty_pb2.Empty()

    @dapr_errors
    async def QueryStateAlpha1(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> state_pb2.QueryStateResponse:
        try:
            document = strict_json.loads(request.query)
        except ValueError as exc:
            raise invalid_argument(
                "ERR_MALFORMED_REQUEST", f"failed to parse JSON query body: {exc}"
            ) from exc
        try:
            query = parse_query(document)
        except ValueError as exc:
            raise invalid_argument("ERR_MALFORMED_REQUEST", f"query: {exc}") from exc
        result = await self.state.query(request.store_name, query)
        return state_pb2.QueryStateResponse(
            results=[state_pb2.QueryStateItem(key=i.key, data=i.value, etag=i.etag) for i in result.results],
            token=result.token or "",
        )
