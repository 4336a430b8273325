"""Go-style durations ("5s", "1m30s", "250ms", "1h") as used in Dapr YAML."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float, *, field: str = "duration") -> float:
    """Seconds in `text`; a bare number means seconds. Raises ValueError naming `field`."""
    if isinstance(text, bool):
        raise ValueError(f"{field}: expected a duration like '5s', got {text!r}")
    if isinstance(text, int | float):
        return float(text)
    value = str(text).strip()
    if not value:
        raise ValueError(f"{field}: empty duration")
    try:
        return float(value)
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"{field}: {value!r} is not a duration (use e.g. '500ms', '5s', '1m30s')")
    return total
