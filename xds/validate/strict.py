"""Strict mode: refuse what istiod accepts with a warning (a route to a host, subset or port that does not
exist yet answers 503 until it does; a younger VirtualService for a host is shadowed). Light on purpose: the
CLI client imports it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from xds.diagnostics import Diagnostic, Severity

ENV_STRICT = "MECHA_STRICT"
STRICT_ONLY = frozenset({"dangling-host", "unknown-subset", "unknown-port", "vs-duplicate"})
MEANWHILE = "accepted as istiod does: the route answers 503 until it exists"


def strict_from_env() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in ("1", "true", "yes", "on")


def promote_strict(diags: list[Diagnostic], earlier: Iterable[Diagnostic] = ()) -> list[Diagnostic]:
    """The warnings istiod would accept become errors: the change is refused. Those the accepted config
    already had (`earlier`) stay warnings: a strict apply is refused for what it brings, not for the past."""
    accepted = {identity(d) for d in earlier}
    return [
        replace(d, severity=Severity.ERROR, message=_strict_message(d.message))
        if d.code in STRICT_ONLY and d.severity is Severity.WARNING and identity(d) not in accepted
        else d
        for d in diags
    ]


def identity(d: Diagnostic) -> tuple[object, ...]:
    """Equal for the same finding about the same document in two compiles."""
    return (d.severity, d.location, d.field, d.code, d.message)


def _strict_message(message: str) -> str:
    if MEANWHILE in message:
        return message.replace(MEANWHILE, "refused in strict mode; istiod would accept it and answer 503")
    return f"{message} (refused in strict mode)"
