"""What every gRPC API mixin shares: the runtime, request metadata helpers, input validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from capabilities.api.grpc.errors import invalid_argument

if TYPE_CHECKING:
    from capabilities.runtime import Runtime


class ApiBase:
    """Mixins of the Dapr servicer inherit this; `runtime` is a capabilities.runtime.Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


def incoming_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """Invocation metadata as {lower-case key: first value}; binary (-bin) entries are skipped."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key.endswith("-bin") or not isinstance(value, str):
            continue
        out.setdefault(key.lower(), value)
    return out


def trace_headers(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    md = incoming_metadata(context)
    return md.get("traceparent", ""), md.get("tracestate", "")


def require(value: str, error_code: str, what: str) -> str:
    """Reject an empty required field the way Dapr's gRPC API does (INVALID_ARGUMENT, naming the field)."""
    if not value or not value.strip():
        raise invalid_argument(error_code, f"{what} is empty")
    return value
