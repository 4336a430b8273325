"""GetSecret / GetBulkSecret over gRPC: adapters over capabilities.blocks.secretstores.service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import secret_pb2

from capabilities.api.grpc.base import ApiBase
from capabilities.api.grpc.errors import dapr_errors
from capabilities.blocks.secretstores.service import SecretsService

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


class SecretsApi(ApiBase):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.secrets = SecretsService(runtime)

    @dapr_errors
    async def GetSecret(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> secret_pb2.GetSecretResponse:
        data = await self.secrets.get(request.store_name, request.key, dict(request.metadata))
        return secret_pb2.GetSecretResponse(data=data)

    @dapr_errors
    async def GetBulkSecret(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> secret_pb2.GetBulkSecretResponse:
        secrets = await self.secrets.bulk(request.store_name, dict(request.metadata))
        return secret_pb2.GetBulkSecretResponse(
            data={name: secret_pb2.SecretResponse(secrets=values) for name, values in secrets.items()}
        )
