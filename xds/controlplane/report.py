"""Human-readable lines for API results (shared by the server log and the CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diag_line(d: Mapping[str, Any]) -> str:
    """One diagnostic dict (Diagnostic.to_dict()) as `error: file doc N (Kind ns/name) field F: message`."""
    where = f"{d.get('file', '<inline>')} doc {d.get('document', 0)}"
    if d.get("item") is not None:  # the index within a kubectl `kind: List`
        where += f" item {d['item']}"
    if d.get("kind"):
        where += f" ({d['kind']} {d.get('namespace', '')}/{d.get('name', '')})"
    fld = f" field {d['field']}" if d.get("field") else ""
    return f"{d.get('severity', 'error')}: {where}{fld}: {d.get('message', '')}"


def change_summary(changes: Mapping[str, list[str]]) -> str:
    parts = [f"{len(v)} {k}" for k, v in changes.items() if v and k != "not_found"]
    return ", ".join(parts) or "unchanged"
