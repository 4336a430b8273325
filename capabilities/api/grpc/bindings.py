"""InvokeBinding over gRPC: an adapter over capabilities.blocks.bindings.service.invoke (output bindings)."""

from __future__ import annotations

from typing import Any

import grpc
from dapr.proto.runtime.v1 import binding_pb2

from capabilities.api.grpc.base import ApiBase, require
from capabilities.api.grpc.errors import dapr_errors
from capabilities.blocks.bindings import service
from capabilities.blocks.bindings.contract import InvokeRequest


class BindingsApi(ApiBase):
    @dapr_errors
    async def InvokeBinding(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> binding_pb2.InvokeBindingResponse:
        name = require(request.name, "ERR_INVOKE_OUTPUT_BINDING", "binding name")
        operation = require(request.operation, "ERR_INVOKE_OUTPUT_BINDING", "operation")
        response = await service.invoke(
            self.runtime,
            name,
            InvokeRequest(operation=operation, data=bytes(request.data), metadata=dict(request.metadata)),
        )
        return binding_pb2.InvokeBindingResponse(data=response.data, metadata=dict(response.metadata))
