"""Block-level errors. api/ maps them to Dapr HTTP status + ERR_* codes and to gRPC status codes."""

from __future__ import annotations


class DaprError(Exception):
    """An error with Dapr's errorCode (ERR_...), HTTP status and gRPC status code name."""

    def __init__(
        self,
        error_code: str,
        message: str,
        http_status: int = 500,
        grpc_code: str = "INTERNAL",
        *,
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.http_status = http_status
        self.grpc_code = grpc_code
        # A transient error: HTTP Retry-After / gRPC RetryInfo tell the client when to try again.
        self.retry_after_s = retry_after_s

    def to_json(self) -> dict[str, str]:
        return {"errorCode": self.error_code, "message": self.message}
