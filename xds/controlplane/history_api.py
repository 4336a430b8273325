"""GET /api/v1/config/history and POST /api/v1/config/rollback?version=N (answers redacted by api.py's
middleware like every other JSON answer)."""

from __future__ import annotations

from aiohttp import web

from xds.controlplane.api_context import CONTROL_PLANE, error, outcome_response
from xds.controlplane.store import StoreError


async def history(request: web.Request) -> web.Response:
    try:
        view = await request.app[CONTROL_PLANE].history_view()
    except StoreError as exc:
        return error(503, f"config store unavailable: {exc}")
    return web.json_response(view)


async def rollback(request: web.Request) -> web.Response:
    """Re-apply an earlier version as a new one: 200, 404 unknown/compacted version, 409, 422, 503."""
    raw = request.query.get("version", "").strip()
    if not raw.isdigit() or int(raw) < 1:
        return error(400, f"version={raw!r}: expected a version number from GET /api/v1/config/history")
    dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
    outcome = await request.app[CONTROL_PLANE].rollback(int(raw), dry_run=dry_run)
    if outcome.get("conflict") == "not-found":
        first = next((d["message"] for d in outcome["diagnostics"]), "")
        return web.json_response({"error": f"cannot roll back: {first}", **outcome}, status=404)
    return outcome_response(outcome)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/config/history", history)
    app.router.add_post("/api/v1/config/rollback", rollback)
