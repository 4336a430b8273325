"""Typed reads of a component's string metadata, with errors naming the file, component and field.

Used by the pub/sub and bindings backends (both speak Dapr's metadata conventions: "5s", "500ms", "true").
"""

from __future__ import annotations

import re

from capabilities.daprspec.component import ComponentSpec
from capabilities.errors import DaprError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def invalid(spec: ComponentSpec, field: str, reason: str) -> DaprError:
    return DaprError(
        "ERR_COMPONENT_METADATA",
        f"{spec.source}: component {spec.name!r} ({spec.type}): metadata {field}: {reason}",
        400,
        "INVALID_ARGUMENT",
    )


def get_str(spec: ComponentSpec, field: str, default: str = "", *, required: bool = False) -> str:
    value = spec.metadata.get(field, "")
    if value == "":
        if required:
            raise invalid(spec, field, "is required")
        return default
    return value


def get_duration(spec: ComponentSpec, field: str, default_s: float) -> float:
    """Seconds from "1.5s", "500ms", "2m", "1h" or a bare number of seconds."""
    raw = spec.metadata.get(field, "")
    if raw == "":
        return default_s
    match = _DURATION.match(raw)
    if not match:
        raise invalid(spec, field, f"{raw!r} is not a duration (examples: 500ms, 5s, 1m)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def get_int(spec: ComponentSpec, field: str, default: int, *, minimum: int | None = None) -> int:
    raw = spec.metadata.get(field, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(spec, field, f"{raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise invalid(spec, field, f"{value} is below the minimum {minimum}")
    return value


def get_bool(spec: ComponentSpec, field: str, default: bool) -> bool:
    raw = spec.metadata.get(field, "").strip().lower()
    if raw == "":
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise invalid(spec, field, f"{raw!r} is not a boolean (true/false)")


def host_port(spec: ComponentSpec, field: str, default: str) -> tuple[str, int]:
    raw = get_str(spec, field, default)
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit():
        raise invalid(spec, field, f"{raw!r} is not host:port")
    return host or "127.0.0.1", int(port)
