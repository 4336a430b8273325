"""What every module of the HTTP API reads: the application's keys (the ControlPlane, the redactor) and the
JSON answer shapes. Its own module so handler modules (history, registration, identity, Gateway API status,
the UI) import it at the top instead of importing api.py, which imports them, inside each handler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from xds.redact import Redactor

if TYPE_CHECKING:
    from xds.controlplane.runtime import ControlPlane

CONTROL_PLANE: web.AppKey[ControlPlane] = web.AppKey("control_plane")
REDACTOR = web.AppKey("redactor", Redactor)


def error(status: int, message: str, diagnostics: list[dict[str, Any]] | None = None) -> web.Response:
    return web.json_response({"error": message, "diagnostics": diagnostics or []}, status=status)


def outcome_response(outcome: dict[str, Any]) -> web.Response:
    """200 accepted; 409 refused for who asked (another owner's document) or when (expected_version);
    503 the store could not write; 422 the config itself is invalid."""
    if outcome["accepted"]:
        return web.json_response(outcome)
    conflict = outcome.get("conflict", "")
    first = next((d["message"] for d in outcome["diagnostics"]), "")
    if conflict == "version":
        message = (
            f"config version is {outcome['current_version']}, expected {outcome['expected_version']}: "
            "the config changed since it was read; read it again and retry"
        )
        return web.json_response({"error": message, **outcome}, status=409)
    if conflict == "owner":
        return web.json_response({"error": f"config refused: {first}", **outcome}, status=409)
    if conflict == "store":
        return web.json_response({"error": f"config store unavailable: {first}", **outcome}, status=503)
    return web.json_response({"error": "config refused", **outcome}, status=422)
