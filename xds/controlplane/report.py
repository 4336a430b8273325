"""Human-readable lines for API results (shared by the server log and the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from xds.diagnostics import Diagnostic, Severity
from xds.validate.strict import STRICT_ONLY, identity


def diag_line(d: Mapping[str, Any]) -> str:
    """One diagnostic dict (Diagnostic.to_dict()) as `error: file doc N (Kind ns/name) field F: message`."""
    where = f"{d.get('file', '<inline>')} doc {d.get('document', 0)}"
    if d.get("item") is not None:  # the index within a kubectl `kind: List`
        where += f" item {d['item']}"
    if d.get("kind"):
        where += f" ({d['kind']} {d.get('namespace', '')}/{d.get('name', '')})"
    fld = f" field {d['field']}" if d.get("field") else ""
    return f"{d.get('severity', 'error')}: {where}{fld}: {d.get('message', '')}"


def own_diagnostics(
    diagnostics: Iterable[Diagnostic], earlier: Iterable[Diagnostic]
) -> tuple[list[Diagnostic], int]:
    """(what this change brought, how many warnings the accepted config already had): an apply shows its own
    warnings, not every unrelated file's again. Errors are always shown (they say why it is refused)."""
    before = {identity(d) for d in earlier}
    own = [d for d in diagnostics if d.severity is Severity.ERROR or identity(d) not in before]
    repeated = sum(1 for d in diagnostics if d.severity is Severity.WARNING and identity(d) in before)
    return own, repeated


def routing_warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Warnings about routes that answer 503 until their target exists, or a VirtualService that is shadowed
    (what proxy-status shows beside the sync state)."""
    return [d for d in diagnostics if d.severity is Severity.WARNING and d.code in STRICT_ONLY]


def change_summary(changes: Mapping[str, list[str]]) -> str:
    parts = [f"{len(v)} {k}" for k, v in changes.items() if v and k != "not_found"]
    return ", ".join(parts) or "unchanged"
