"""HTTP API of the control plane (aiohttp). Every error is JSON: {"error": ..., "diagnostics": [...]}."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST

from xds import metrics
from xds.controlplane import history_api, registration_api, ui
from xds.controlplane.api_context import CONTROL_PLANE, REDACTOR, error, outcome_response
from xds.controlplane.auth import (
    PRINCIPAL,
    SCOPE_ADMIN,
    Credentials,
    HostPolicy,
    allowed_hosts_from_env,
    guard,
)
from xds.controlplane.body import BodyError, check_yaml, decode_text, json_files
from xds.controlplane.envoy_admin import SECTIONS, AdminError, NoAdminError, proxy_config, short_rows
from xds.controlplane.report import routing_warnings
from xds.gatewayapi import api as gateway_api
from xds.identity.api import issue_credential, revoke_credential
from xds.redact import RedactingFilter, Redactor

if TYPE_CHECKING:
    pass

log = logging.getLogger("mecha.api")

LONG_POLL_MAX_S = 30.0


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason or str(exc))
    except Exception as exc:  # never crash the server on one bad request; say what happened
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


@web.middleware
async def redact_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every JSON answer leaves with secrets redacted, except the Dapr documents for their reader (the
    capability service needs the real credentials)."""
    response = await handler(request)
    principal = request.get(PRINCIPAL)
    if request.path == "/api/v1/dapr" and principal is not None and not principal.may(SCOPE_ADMIN):
        return response  # the reader credential: real values
    if request.path == "/api/v1/credentials" and response.status == 200:
        return response  # the workload credential just issued is the answer (operator only: the guard)
    is_json = isinstance(response, web.Response) and response.content_type == "application/json"
    if not is_json or not isinstance(response.body, bytes):
        return response
    # the known values follow the store and the proxies (ControlPlane.redactor), not each request
    cleaned = request.app[REDACTOR].value(json.loads(response.body))
    return web.json_response(cleaned, status=response.status, headers=_kept_headers(response))


def _kept_headers(response: web.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def _files(request: web.Request) -> list[tuple[str, str]]:
    """Body: YAML text (?filename= names it), or JSON {"files": [{"name": ..., "text": ...}]}.

    Hostile bodies (bad charset, deep nesting, YAML bombs, huge numbers) are a 4xx naming the file."""
    try:
        text = decode_text(await request.read(), request.charset)
        if request.content_type == "application/json":
            files = json_files(text)
        else:
            files = [(request.query.get("filename", "<request>"), text)]
        for name, file_text in files:
            check_yaml(name, file_text)
    except BodyError as exc:
        refusal = web.HTTPUnsupportedMediaType if exc.status == 415 else web.HTTPBadRequest
        raise refusal(
            text=json.dumps({"error": str(exc), "diagnostics": []}), content_type="application/json"
        ) from None
    return files


async def apply(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    expected = request.query.get("expected_version", "").strip()  # optimistic concurrency (scripts, CI)
    if expected and not expected.isdigit():
        return error(400, f"expected_version={expected!r}: expected the integer version from /api/v1/config")
    outcome = await cp.apply(
        await _files(request),
        dry_run=_flag(request, "dry_run"),
        expected_version=int(expected) if expected else None,
        strict=_flag(request, "strict"),  # refuse what istiod accepts with a warning (missing hosts...)
    )
    return outcome_response(outcome)


async def delete(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    expected = request.query.get("expected_version", "").strip()
    if expected and not expected.isdigit():
        return error(400, f"expected_version={expected!r}: expected the integer version from /api/v1/config")
    outcome = await cp.delete(
        await _files(request),
        dry_run=_flag(request, "dry_run"),
        expected_version=int(expected) if expected else None,
    )
    return outcome_response(outcome)


async def config(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL_PLANE].config_view())


async def proxies(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    # routes the accepted config sends to a missing host/subset (503 until it exists), as istiod accepts them
    warnings = [d.to_dict() for d in routing_warnings(getattr(cp.store.result, "diagnostics", []))]
    return web.json_response({"proxies": cp.proxy_status(), "warnings": warnings})


async def proxy_section(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    proxy_id, section = request.match_info["proxy"], request.match_info["section"]
    if section not in SECTIONS:
        return error(404, f"unknown section {section!r}; use one of {', '.join(SECTIONS)}")
    proxy = cp.proxy(proxy_id)
    if proxy is not None:
        admin = proxy.admin
    else:  # a stream another replica holds (its heartbeat row): any replica answers for the fleet
        row = next((r for r in cp.proxy_status() if r.get("proxy_id") == proxy_id), None)
        if row is None:
            return error(404, f"no connected proxy {proxy_id!r}; see GET /api/v1/proxies")
        admin = row.get("admin")
    try:  # through its agent's admin relay (here or on the replica holding it), else its announced admin
        dump = await proxy_config(cp, proxy_id, admin, section)
    except NoAdminError as exc:
        return error(409, str(exc))
    except AdminError as exc:
        return error(502, str(exc))
    if request.query.get("format") == "short":
        return web.json_response({"proxy": proxy_id, "section": section, "rows": short_rows(section, dump)})
    return web.json_response(dump)


async def dapr(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    wait = request.query.get("wait", "").strip()
    if wait:  # absent or empty: answer at once (the first poll of a client)
        try:
            seen = int(wait)
            timeout = min(float(request.query.get("timeout", LONG_POLL_MAX_S)), LONG_POLL_MAX_S)
        except ValueError:
            return error(400, f"wait={wait!r}: expected the integer version from a previous answer")
        await cp.wait_for_version_change(seen, timeout)
    return web.json_response(cp.dapr_view())


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    if not cp.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready", "version": cp.store.version, "xds_port": cp.xds_port})


def make_app(
    control_plane: Any, credentials: Credentials, hosts: HostPolicy, redactor: Redactor | None = None
) -> web.Application:
    ui_sessions = ui.UiSessions()
    app = web.Application(
        middlewares=[guard(credentials, hosts, ui_sessions.principal), redact_answers, json_errors],
        client_max_size=64 * 1024 * 1024,
    )
    app[CONTROL_PLANE] = control_plane
    app[REDACTOR] = redactor or control_plane.redactor
    app.router.add_post("/api/v1/apply", apply)
    app.router.add_post("/api/v1/delete", delete)
    app.router.add_get("/api/v1/config", config)
    app.router.add_get("/api/v1/proxies", proxies)
    app.router.add_get("/api/v1/proxies/{proxy}/config/{section}", proxy_section)
    app.router.add_get("/api/v1/dapr", dapr)
    app.router.add_post("/api/v1/credentials", issue_credential)  # xds/identity/api.py
    app.router.add_post("/api/v1/credentials/revoke", revoke_credential)
    history_api.add_routes(app)  # GET /api/v1/config/history, POST /api/v1/config/rollback
    registration_api.add_routes(app)  # POST /api/v1/workloads/health (workload credential), GET workloads
    gateway_api.add_routes(app)  # GET /api/v1/gateway-api/status
    app.router.add_get("/metrics", prometheus)
    ui.add_routes(app, ui_sessions)  # the dashboard: /ui, /ui/login, /ui/api/state, POST /api/v1/ui/code
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class OneLineHttpErrors(logging.Filter):
    """aiohttp logs a traceback per malformed HTTP request; one WARNING line says the same.

    The capability service has its own copy on the same logger (capabilities/api/http/logfilter.py: xds does
    not import capabilities): both write exactly this line, so whichever runs first, the log reads the same
    (tests/xds/controlplane/test_api_auth.py compares them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = " ".join(str(exc.message).split()) or type(exc).__name__  # aiohttp's text spans lines
            record.msg, record.args = MALFORMED_HTTP_LINE, (record.getMessage(), exc.code, reason[:200])
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


MALFORMED_HTTP_LINE = "%s: malformed HTTP request answered %s: %s"


def install_log_filters(redactor: Redactor) -> None:
    """Malformed HTTP in one line; known secret values never reach a log line (root handlers see all)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineHttpErrors) for f in server_log.filters):
        server_log.addFilter(OneLineHttpErrors())
    for handler in logging.getLogger().handlers:
        installed = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        for found in installed:  # another control plane started in this process before: this one's values
            found.redactor = redactor
        if not installed:
            handler.addFilter(RedactingFilter(redactor))


async def start_api(
    control_plane: Any,
    host: str,
    port: int,
    state_dir: Path | None = None,
    allowed_hosts: list[str] | None = None,
    credentials: Credentials | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve the API; returns the runner (cleanup() to stop) and the bound port (port 0 -> a free one).

    The tokens come from `credentials`, else the state folder (created on first start)."""
    if credentials is None:
        credentials = Credentials.from_state_dir(state_dir or control_plane.settings.state_dir)
    hosts = HostPolicy(host, [*(allowed_hosts or []), *allowed_hosts_from_env()])
    install_log_filters(control_plane.redactor)
    runner = web.AppRunner(make_app(control_plane, credentials, hosts), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    bound = port
    if server is not None and getattr(server, "sockets", None):
        sockets = getattr(server, "sockets", None) or []  # asyncio.Server's; AbstractServer has none
        bound = sockets[0].getsockname()[1]
    return runner, bound
