"""build_app(runtime): the Dapr HTTP API application with its middleware (token, body limit, error JSON)."""

from __future__ import annotations

import hmac
import importlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from capabilities import metrics as capability_metrics
from capabilities.api.http import configuration, lock, metadata, secrets, sequencer, state
from capabilities.api.http.common import json_response, malformed
from capabilities.api.http.invoke import unknown_app_error
from capabilities.api.http.logfilter import quiet_malformed_http
from capabilities.blocks.configuration.service import ConfigurationService
from capabilities.blocks.state.service import StateService
from capabilities.errors import DaprError
from capabilities.metrics import record_http_response
from capabilities.tracing import TRACING, traced_http

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("runtime")
CONFIG_SERVICE_KEY = web.AppKey("configuration_service", ConfigurationService)


def error_response(err: DaprError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after_s)} if err.retry_after_s is not None else None
    return json_response(err.to_json(), status=err.http_status, headers=headers)


def _make_middlewares(runtime: Runtime) -> list[Any]:
    settings = runtime.settings
    token = settings.api_token.encode() if settings.api_token else None
    max_body = settings.max_body_bytes
    app_id = runtime.app_id

    def check(request: web.Request) -> None:
        """Token and body limit: raise the Dapr error, or return when the request may proceed."""
        if token is not None and request.path not in metadata.UNAUTHENTICATED_PATHS:
            given = request.headers.get("dapr-api-token", "").encode()
            if not hmac.compare_digest(given, token):
                raise DaprError("ERR_UNAUTHORIZED", "invalid api token", 401, "UNAUTHENTICATED")
        if request.content_length is not None and request.content_length > max_body:
            raise _too_large(request, max_body)

    # One middleware, not three: each aiohttp middleware layer costs a wrapper call on every request. It also
    # counts the response (dapr_http_server_request_count) once its status is known.
    @web.middleware
    async def dapr_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response: web.StreamResponse
        try:
            check(request)
            if TRACING.enabled_for(app_id):  # Configuration spec.tracing (capabilities/tracing.py)
                response = await traced_http(request, handler, app_id)
            else:
                response = await handler(request)
        except DaprError as err:
            response = error_response(err)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(_too_large(request, max_body))
        except web.HTTPNotFound:
            if (unknown_app := unknown_app_error(request)) is not None:  # as daprd: 500 ERR_DIRECT_INVOKE
                response = error_response(unknown_app)
            else:
                message = f"method {request.method} {request.path!r} is not found"
                response = error_response(DaprError("ERR_NOT_FOUND", message, 404, "NOT_FOUND"))
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
            response = error_response(DaprError("ERR_METHOD_NOT_ALLOWED", message, 405, "UNIMPLEMENTED"))
        except web.HTTPException as exc:  # aiohttp turns it into the response
            record_http_response(app_id, request, exc.status)
            raise
        except (RecursionError, UnicodeError) as exc:
            # Input no handler could represent (nesting past the interpreter's limit, text that is not
            # Unicode): the caller's fault, so a 400 and one log line, not a 500 with a traceback.
            log.info("malformed input on %s %s: %s", request.method, request.path, type(exc).__name__)
            reason = "nested too deeply" if isinstance(exc, RecursionError) else f"not valid Unicode ({exc})"
            response = error_response(malformed(f"request input is {reason}"))
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(
                DaprError("ERR_INTERNAL", f"internal error: {exc or type(exc).__name__}", 500)
            )
        record_http_response(app_id, request, response.status)
        return response

    return [dapr_middleware]


def _too_large(request: web.Request, max_body: int) -> DaprError:
    return DaprError(
        "ERR_BODY_TOO_LARGE",
        f"request body of {request.method} {request.path} exceeds the limit of {max_body} bytes "
        "(MECHA_MAX_BODY_BYTES)",
        413,
        "RESOURCE_EXHAUSTED",
    )


def _optional_module(name: str) -> Any | None:
    """Import a module owned by another part of the service if it exists (pub/sub, bindings, delivery)."""
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def build_app(runtime: Runtime) -> web.Application:
    quiet_malformed_http()
    # aiohttp refuses bodies above client_max_size while reading (chunked uploads included).
    app = web.Application(
        middlewares=_make_middlewares(runtime), client_max_size=runtime.settings.max_body_bytes
    )
    app[RUNTIME_KEY] = runtime
    config_service = ConfigurationService(runtime)
    app[CONFIG_SERVICE_KEY] = config_service
    metadata.add_routes(app, runtime)
    capability_metrics.install(app)  # daprd's metric names
    state.add_routes(app, StateService(runtime))
    secrets.add_routes(app, runtime)
    configuration.add_routes(app, config_service)
    lock.add_routes(app, runtime)
    sequencer.add_routes(app, runtime)
    for name in ("capabilities.api.http.pubsub", "capabilities.api.http.bindings"):
        module = _optional_module(name)
        if module is not None and hasattr(module, "add_routes"):
            module.add_routes(app, runtime)

    stops: list[Callable[[], Awaitable[None]]] = []

    async def on_startup(app: web.Application) -> None:
        # Called before components load: delivery waits on runtime.components_ready / on_config_change.
        delivery = _optional_module("capabilities.delivery.http")
        start = getattr(delivery, "start", None)
        if start is None:
            return
        try:
            stop = await start(runtime)
        except Exception:
            log.exception("capabilities.delivery.start failed; pub/sub and input bindings delivery are off")
            return
        if stop is not None:
            stops.append(stop)

    async def on_cleanup(app: web.Application) -> None:
        await config_service.close()
        for stop in reversed(stops):
            try:
                await stop()
            except Exception:
                log.exception("stopping delivery failed")

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
