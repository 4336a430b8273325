"""Method handlers of the Dapr service, wrapped ONCE at start-up with the checks every call needs.

- `dapr-api-token` (when DAPR_API_TOKEN is set): UNAUTHENTICATED with daprd's messages (see auth.py);
- requests whose bytes are not a valid protobuf of the method's type: grpcio would answer UNKNOWN with a
  Python exception name; daprd (grpc-go) answers INTERNAL "grpc: error unmarshalling request: ...". The
  deserializer returns a marker instead of raising and the wrapper aborts before any servicer code runs.

Unary calls also get a SERVER span named after the method (as daprd's gRPC API spans) when the app traces
(capabilities/tracing.py), child of the caller's traceparent metadata.

Wrapping the handlers once (instead of a grpc.aio ServerInterceptor, which runs per call and builds new
handlers each time) keeps these checks to one function call per RPC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from capabilities.api.grpc.auth import check_token
from capabilities.tracing import TRACING, grpc_trace_carrier


class _Malformed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _message(bad: _Malformed) -> str:
    return f"grpc: error unmarshalling request: {bad.reason}"


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError and friends
            return _Malformed(str(exc) or type(exc).__name__)

    return parse


async def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Malformed):
            await context.abort(grpc.StatusCode.INTERNAL, _message(request))
        yield request


async def _admit(token: str, request: Any, context: grpc.aio.ServicerContext) -> None:
    """Abort the call when its token is wrong or its request did not parse."""
    if token:
        problem = check_token(token, context.invocation_metadata())
        if problem is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
    if isinstance(request, _Malformed):
        await context.abort(grpc.StatusCode.INTERNAL, _message(request))


def _wrap(handler: grpc.RpcMethodHandler, token: str, span_name: str, app: str) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": _lenient(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming:
        behaviour = handler.stream_stream or handler.stream_unary

        if handler.response_streaming:

            async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await _admit(token, None, context)
                async for response in behaviour(_checked(requests, context), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(token, None, context)
            return await behaviour(_checked(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)

    if handler.response_streaming:
        unary_stream_behaviour = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(token, request, context)
            async for response in unary_stream_behaviour(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)

    unary_behaviour = handler.unary_unary

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _admit(token, request, context)
        if not TRACING.enabled_for(app):
            return await unary_behaviour(request, context)
        carrier = grpc_trace_carrier(context.invocation_metadata())
        with TRACING.span(span_name, "SERVER", carrier, app=app):  # an abort (error status) marks it failed
            return await unary_behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)


class _Capture:
    """Stands in for a server to collect the generated method handlers of the Dapr service."""

    service = ""
    handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def add_dapr_service(server: grpc.aio.Server, servicer: Any, *, token: str) -> None:
    """Register `servicer` as dapr.proto.runtime.v1.Dapr with every handler guarded."""
    capture = _Capture()
    dapr_pb2_grpc.add_DaprServicer_to_server(servicer, capture)
    app = str(getattr(getattr(servicer, "runtime", None), "app_id", "") or "")
    guarded = {
        name: _wrap(handler, token, f"/{capture.service}/{name}", app)
        for name, handler in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, guarded),))
    server.add_registered_method_handlers(capture.service, guarded)
