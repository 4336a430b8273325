"""bindings.http: an output binding calling an HTTP endpoint (Dapr's bindings.http).

Metadata `url` (required); per request metadata `path` is appended and the other keys are sent as headers.
Operations: get head post put patch delete options trace, and create (= post). The response body is
returned with metadata `statusCode`, `status` and the response headers; a status >= 400 is an error.
"""

from __future__ import annotations

import aiohttp

from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    Feature,
    InvokeRequest,
    InvokeResponse,
)
from capabilities.blocks.pubsub import metadata as md
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register

_METHODS = ["get", "head", "post", "put", "patch", "delete", "options", "trace"]


@register("bindings.http")
class HttpBinding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        url = md.get_str(spec, "url", required=True)
        if not url.startswith(("http://", "https://")):
            raise md.invalid(spec, "url", f"{url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.timeout_s = md.get_duration(spec, "responseTimeout", 30.0)
        self._session: aiohttp.ClientSession | None = None

    async def init(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    def features(self) -> set[str]:
        return {Feature.OUTPUT}

    def operations(self) -> list[str]:
        return [*_METHODS, "create"]

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if self._session is None:
            raise BindingBackendError(f"binding {self.spec.name} used before init()")
        method = "POST" if request.operation == "create" else request.operation.upper()
        meta = dict(request.metadata)
        path = meta.pop("path", "")
        url = self.url + ("/" + path.lstrip("/") if path else "")
        headers = {k: v for k, v in meta.items() if k not in ("traceparent", "tracestate") or v}
        try:
            async with self._session.request(method, url, data=request.data or None, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                out_meta = {"statusCode": str(status), "status": f"{status} {resp.reason or ''}".strip()}
                out_meta.update({k: v for k, v in resp.headers.items()})
                content_type = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BindingBackendError(f"{method} {url}: {exc or type(exc).__name__}") from exc
        if status >= 400:
            raise BindingBackendError(f"{method} {url}: received status code {status}: {body[:200]!r}")
        return InvokeResponse(body, out_meta, content_type)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
