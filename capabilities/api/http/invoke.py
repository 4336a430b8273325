"""Service invocation that reaches the capability service: an app id the mesh does not know.

The proxy's Dapr listener routes `/v1.0/invoke/<app>/method/...` (and `dapr-app-id: <app>`) for every app in
the mesh; whatever falls through to here names an app it has no route for. daprd answers that with
ErrDirectInvoke (pkg/messages/predefined.go: ERR_DIRECT_INVOKE, HTTP 500, gRPC Internal), not a 404, and the
SDKs surface it as such, so the same answer is given here.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from capabilities.errors import DaprError

INVOKE_PREFIX = "/v1.0/invoke/"
APP_ID_HEADER = "dapr-app-id"


def target_app_id(request: web.Request) -> str:
    """The app id an invocation names (header first, as daprd's findTargetIDAndMethod), else ""."""
    if request.headers.get(APP_ID_HEADER):
        return request.headers[APP_ID_HEADER]
    path = request.raw_path.split("?", 1)[0]
    if path.startswith(INVOKE_PREFIX) and "/method/" in path[len(INVOKE_PREFIX) :]:
        return unquote(path[len(INVOKE_PREFIX) :].split("/method/", 1)[0])
    return ""


def unknown_app_error(request: web.Request) -> DaprError | None:
    """daprd's answer to an invocation of an app that cannot be resolved; None if this is no invocation."""
    app_id = target_app_id(request)
    if not app_id:
        return None
    return DaprError(
        "ERR_DIRECT_INVOKE",
        f"failed to invoke, id: {app_id}, err: couldn't find service: {app_id}",
        500,
        "INTERNAL",
    )
