"""The only place mapping block errors (DaprError) to gRPC status codes.

Dapr returns a plain gRPC status whose details carry a google.rpc.ErrorInfo with the ERR_* code as `reason`
and "dapr.io" as `domain` (dapr/kit errors); the Python SDK's DaprGrpcError reads those details.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from capabilities.errors import DaprError

log = logging.getLogger(__name__)

ERROR_DOMAIN = "dapr.io"

# DaprError.grpc_code -> grpc.StatusCode. Both the C++/Python spelling ("INVALID_ARGUMENT") and Go's
# ("InvalidArgument", as in dapr's messages.go) are accepted, so block code can copy Dapr's table verbatim.
GRPC_CODES: dict[str, grpc.StatusCode] = {}
for _code in grpc.StatusCode:
    GRPC_CODES[_code.name] = _code
    GRPC_CODES["".join(part.capitalize() for part in _code.name.split("_"))] = _code
GRPC_CODES["Canceled"] = grpc.StatusCode.CANCELLED  # Go's spelling
GRPC_CODES["DeadlineExceeded"] = grpc.StatusCode.DEADLINE_EXCEEDED

# What an HTTP status means when a DaprError carries no usable grpc_code (mirrors dapr's
# invokev1.ErrorFromHTTPResponseCode / grpc-gateway's HTTPStatusFromCode, reversed).
HTTP_TO_GRPC: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code_of(err: DaprError) -> grpc.StatusCode:
    code = GRPC_CODES.get(str(err.grpc_code or ""))
    if code is not None:
        return code
    return HTTP_TO_GRPC.get(int(err.http_status), grpc.StatusCode.INTERNAL)


def to_status(err: DaprError) -> grpc.Status:
    """A grpc.Status with Dapr's ErrorInfo detail (reason = ERR_... code)."""
    code = grpc_code_of(err)
    info = error_details_pb2.ErrorInfo(reason=err.error_code, domain=ERROR_DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if err.retry_after_s is not None:  # transient (e.g. components not loaded yet): when to retry
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=err.retry_after_s)))
        details.append(retry)
    proto = status_pb2.Status(code=code.value[0], message=err.message, details=details)
    return rpc_status.to_status(proto)


def invalid_argument(error_code: str, message: str) -> DaprError:
    return DaprError(error_code, message, 400, "INVALID_ARGUMENT")


async def abort(context: grpc.aio.ServicerContext, err: DaprError) -> NoReturn:
    await context.abort_with_status(to_status(err))
    raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def dapr_errors(method: F) -> F:
    """Decorate a unary servicer method: DaprError -> its gRPC status; anything else -> INTERNAL, logged."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except DaprError as err:
            await abort(context, err)
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except (RecursionError, UnicodeError) as exc:  # input nested too deeply / not Unicode: caller's fault
            reason = "nested too deeply" if isinstance(exc, RecursionError) else f"not valid Unicode ({exc})"
            await abort(context, invalid_argument("ERR_MALFORMED_REQUEST", f"request input is {reason}"))
        except Exception as exc:  # never crash the server: a clear INTERNAL status instead
            log.exception("gRPC %s failed", method.__name__)
            await abort(context, DaprError("ERR_INTERNAL", f"{method.__name__}: {exc}", 500, "INTERNAL"))

    return wrapper  # type: ignore[return-value]
