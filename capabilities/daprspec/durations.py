"""Durations as Dapr documents write them: Go's time.ParseDuration ("1h30m", "250ms", ".5s", "0").

Beyond Go: a bare number ("3", 3, 2.5) is seconds, as this project has always read it (daprd itself reads a
bare integer timeout as milliseconds; the Dapr docs only document Go's form). Refused, naming the field: an
empty value, a sign other than '+' (a negative duration), spaces inside, unknown units, inf/nan, booleans.
"""

from __future__ import annotations

import math
import re

from capabilities.daprspec.errors import SpecError

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# one Go duration segment: digits with an optional fraction (either side of '.' may be empty, not both)
_SEGMENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+\.?\d*|\.\d+")
EXAMPLES = "use e.g. '500ms', '5s', '1m30s'"


def parse_duration(value: object, *, field: str = "duration") -> float:
    """Seconds in `value`. Raises SpecError (a ValueError) naming `field` and the reason."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SpecError(field, f"expected a duration like '5s', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise SpecError(field, f"{value!r} is not a duration of zero or more seconds")
        return float(value)
    text = value.strip()
    if not text:
        raise SpecError(field, "empty duration")
    body = text[1:] if text[0] == "+" else text
    if body.startswith("-"):
        raise SpecError(field, f"{text!r} is negative ({EXAMPLES})")
    if _NUMBER.fullmatch(body):
        return float(body)
    total, pos = 0.0, 0
    for match in _SEGMENT.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise SpecError(field, f"{text!r} is not a duration ({EXAMPLES})")
    return total
