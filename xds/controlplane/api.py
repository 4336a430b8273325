"""HTTP API of the control plane (aiohttp). Every error is JSON: {"error": ..., "diagnostics": [...]}."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xds import metrics
from xds.controlplane.envoy_admin import SECTIONS, AdminError, proxy_config, short_rows

log = logging.getLogger("mecha.api")

CONTROL_PLANE = web.AppKey("control_plane", Any)
LONG_POLL_MAX_S = 30.0


def error(status: int, message: str, diagnostics: list[dict[str, Any]] | None = None) -> web.Response:
    return web.json_response({"error": message, "diagnostics": diagnostics or []}, status=status)


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


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def _files(request: web.Request) -> list[tuple[str, str]]:
    """Body: YAML text (?filename= names it), or JSON {"files": [{"name": ..., "text": ...}]}."""
    raw = await request.text()
    if request.content_type == "application/json":
        try:
            payload = json.loads(raw)
            files = [(str(f["name"]), str(f["text"])) for f in payload["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise web.HTTPBadRequest(
                text=json.dumps(
                    {
                        "error": f"bad JSON body: expected {{'files': [{{name, text}}]}} ({exc})",
                        "diagnostics": [],
                    }
                ),
                content_type="application/json",
            ) from None
        return files
    return [(request.query.get("filename", "<request>"), raw)]


async def apply(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    outcome = await cp.apply(await _files(request), dry_run=_flag(request, "dry_run"))
    return _outcome_response(outcome)


async def delete(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    outcome = await cp.delete(await _files(request), dry_run=_flag(request, "dry_run"))
    return _outcome_response(outcome)


def _outcome_response(outcome: dict[str, Any]) -> web.Response:
    if outcome["accepted"]:
        return web.json_response(outcome)
    return web.json_response({"error": "config refused", **outcome}, status=422)


async def config(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROL_PLANE].config_view())


async def proxies(request: web.Request) -> web.Response:
    return web.json_response({"proxies": request.app[CONTROL_PLANE].proxy_status()})


async def proxy_section(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    proxy_id, section = request.match_info["proxy"], request.match_info["section"]
    if section not in SECTIONS:
        return error(404, f"unknown section {section!r}; use one of {', '.join(SECTIONS)}")
    proxy = cp.proxy(proxy_id)
    if proxy is None:
        return error(404, f"no connected proxy {proxy_id!r}; see GET /api/v1/proxies")
    if not proxy.admin:
        return error(409, f"proxy {proxy_id!r} did not announce an admin address (node.metadata.mecha.admin)")
    try:
        dump = await proxy_config(proxy.admin, section)
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
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    cp = request.app[CONTROL_PLANE]
    if not cp.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready", "version": cp.store.version, "xds_port": cp.xds_port})


def make_app(control_plane: Any) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024 * 1024)
    app[CONTROL_PLANE] = control_plane
    app.router.add_post("/api/v1/apply", apply)
    app.router.add_post("/api/v1/delete", delete)
    app.router.add_get("/api/v1/config", config)
    app.router.add_get("/api/v1/proxies", proxies)
    app.router.add_get("/api/v1/proxies/{proxy}/config/{section}", proxy_section)
    app.router.add_get("/api/v1/dapr", dapr)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_api(control_plane: Any, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the API; returns the runner (cleanup() to stop) and the bound port (port 0 -> a free one)."""
    runner = web.AppRunner(make_app(control_plane), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound sockets only here
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = server.sockets[0].getsockname()[1]
    return runner, bound
