"""The one place binding failures become Dapr errors (dapr pkg/api/errors/binding.go, pkg/messages)."""

from __future__ import annotations

from capabilities.blocks.bindings.contract import BindingRequestError
from capabilities.errors import DaprError


def invoke_failed(name: str, exc: BaseException) -> DaprError:
    if isinstance(exc, DaprError):
        return exc
    reason = str(exc) or type(exc).__name__
    status = 400 if isinstance(exc, BindingRequestError) else 500
    grpc = "INVALID_ARGUMENT" if status == 400 else "INTERNAL"
    return DaprError(
        "ERR_INVOKE_OUTPUT_BINDING", f"error invoking output binding {name}: {reason}", status, grpc
    )


def unsupported_operation(name: str, operation: str, supported: list[str]) -> DaprError:
    return DaprError(
        "ERR_INVOKE_OUTPUT_BINDING",
        f"error invoking output binding {name}: binding {name} does not support operation {operation!r}. "
        f"supported operations: {', '.join(supported)}",
        500,
        "INTERNAL",
    )


def not_output(name: str) -> DaprError:
    return DaprError(
        "ERR_INVOKE_OUTPUT_BINDING",
        f"error invoking output binding {name}: binding {name} is an input-only binding",
        500,
        "INTERNAL",
    )


def malformed(reason: str) -> DaprError:
    return DaprError(
        "ERR_MALFORMED_REQUEST", f"failed deserializing HTTP body: {reason}", 400, "INVALID_ARGUMENT"
    )
