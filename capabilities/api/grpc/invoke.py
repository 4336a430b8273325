"""InvokeService: forward to the target app through the mesh and map the reply to InvokeResponse.

The call goes to the Dapr HTTP listener of the local proxy (`/v1.0/invoke/<app>/method/<m>`), where Envoy
applies the mesh's routing, retries, mTLS and the target's app-api-token; the capability service never talks
to another app directly. Base URL: MECHA_INVOKE_URL, else the local Dapr HTTP address.
A non-2xx reply becomes a gRPC error whose code follows the HTTP status and whose message is the body, with
the HTTP status in the `dapr-http-status` header (daprd pkg/api/grpc InvokeService).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import grpc
from dapr.proto.common.v1 import common_pb2
from google.protobuf import any_pb2

from capabilities.api.grpc.base import ApiBase, incoming_metadata, require
from capabilities.api.grpc.errors import HTTP_TO_GRPC, dapr_errors
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

VERBS = {v: k for k, v in common_pb2.HTTPExtension.Verb.items()}

# gRPC/HTTP2 transport metadata that must not become HTTP headers of the forwarded call.
_NOT_FORWARDED = {
    "content-type",
    "user-agent",
    "te",
    "host",
    "content-length",
    "dapr-api-token",
    "grpc-timeout",
}


def forwarded_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if not k.startswith((":", "grpc-")) and k not in _NOT_FORWARDED}


def invoke_base_url(runtime: Runtime) -> str:
    configured = os.environ.get("MECHA_INVOKE_URL") or getattr(runtime.settings, "invoke_url", None)
    if configured:
        return str(configured).rstrip("/")
    host = getattr(runtime.settings, "http_host", None) or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{runtime.settings.http_port}"


class InvokeApi(ApiBase):
    _session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        return self._session

    async def close_invoke(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @dapr_errors
    async def InvokeService(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> common_pb2.InvokeResponse:
        app_id = require(request.id, "ERR_DIRECT_INVOKE", "app id")
        message = request.message
        method = require(message.method, "ERR_DIRECT_INVOKE", "method")
        ext = message.http_extension
        verb = VERBS.get(ext.verb, "NONE")
        verb = "POST" if verb == "NONE" else verb
        target = f"{quote(app_id, safe='.')}/method/{quote(method, safe='/')}"
        url = f"{invoke_base_url(self.runtime)}/v1.0/invoke/{target}"
        if ext.querystring:
            url += "?" + ext.querystring
        headers = forwarded_headers(incoming_metadata(context))
        if message.content_type:
            headers["content-type"] = message.content_type
        token = getattr(self.runtime.settings, "api_token", None)
        if token:
            headers["dapr-api-token"] = token
        body = message.data.value if message.HasField("data") else b""
        timeout = context.time_remaining()
        try:
            async with self._client().request(
                verb,
                url,
                data=body if verb not in ("GET", "HEAD") or body else None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout if timeout else 60.0),
            ) as resp:
                payload = await resp.read()
                status, content_type = resp.status, resp.headers.get("content-type", "")
        except (aiohttp.InvalidURL, ValueError) as exc:  # querystring, content type or metadata not sendable
            raise DaprError(
                "ERR_MALFORMED_REQUEST", f"invoke request for {app_id} cannot be sent: {exc}", 400,
                "INVALID_ARGUMENT",
            ) from exc  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DaprError(
                "ERR_DIRECT_INVOKE",
                f"failed to invoke, id: {app_id}, err: {exc or type(exc).__name__}",
                500,
                "INTERNAL",
            ) from exc
        await context.send_initial_metadata((("dapr-http-status", str(status)),))
        if status >= 300:
            code = HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)
            await context.abort(code, payload.decode("utf-8", "replace") or f"HTTP {status}")
        return common_pb2.InvokeResponse(data=any_pb2.Any(value=payload), content_type=content_type)
