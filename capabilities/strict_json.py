"""JSON from callers, decoded strictly: UTF-8 only, bounded nesting, no lone UTF-16 surrogates.

json.loads alone accepts UTF-16/32 bodies, raises RecursionError (not ValueError) past ~1,000 levels and
returns strings holding lone surrogates ("\\ud800") that fail later, when encoded to UTF-8 for a backend or
a response. Every such input is refused here with a ValueError the API layer maps to its 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Lone surrogates can only come from \u escapes (UTF-8 input cannot encode them); look for one first so
# ordinary bodies skip the walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONInputError(ValueError):
    """The body is not acceptable JSON; the message says why (callers map it to their 400)."""


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: the document may be deep (within the decoder's limit)
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(raw: bytes | str) -> Any:
    """The decoded document, or JSONInputError (a ValueError) naming the problem."""
    if isinstance(raw, bytes | bytearray):
        data = bytes(raw)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(f"body is not UTF-8 text (invalid byte at offset {exc.start})") from None
    else:
        text, data = raw, raw.encode("utf-8", "surrogatepass")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONInputError("JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise JSONInputError("JSON string holds a lone UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode")
    return value
