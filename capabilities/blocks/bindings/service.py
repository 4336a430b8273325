"""Output-binding invocation shared by the HTTP and gRPC APIs and by input-binding replies (`to`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from capabilities.blocks.bindings import errors
from capabilities.blocks.bindings.contract import InvokeRequest, InvokeResponse, OutputBinding

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


def data_bytes(data: Any) -> bytes:
    """The request's `data` field as bytes: strings as their UTF-8 text, anything else as JSON."""
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()


async def invoke(runtime: Runtime, name: str, request: InvokeRequest) -> InvokeResponse:
    binding = runtime.component("bindings", name)
    if not isinstance(binding, OutputBinding):
        raise errors.not_output(name)
    supported = [str(op) for op in binding.operations()]
    if request.operation not in supported:
        raise errors.unsupported_operation(name, request.operation, supported)
    try:
        return await binding.invoke(request)
    except Exception as exc:
        raise errors.invoke_failed(name, exc) from exc


async def send_to_output(
    runtime: Runtime, name: str, data: bytes, operation: str = "create"
) -> InvokeResponse:
    """An input binding's reply `to: [name]`: send its data to that output binding (Dapr uses create)."""
    return await invoke(runtime, name, InvokeRequest(operation=operation, data=data))
