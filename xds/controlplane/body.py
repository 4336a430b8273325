"""Decode an apply/delete request body into (file name, YAML text) pairs, refusing hostile input with a 4xx.

Checked here, at the API boundary, before the YAML loader sees the text: the charset, JSON shape and
duplicate keys, nesting depth (the loaders recurse: 5,000 levels is a RecursionError), alias expansion
(a "billion laughs" document is a few lines that expand to 10^9 nodes when walked) and integers too long
to convert. Anything else malformed is the loader's to report as a diagnostic.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import yaml

MAX_DEPTH = 100  # Istio/Dapr documents nest ~10 levels
MAX_ALIAS_GROWTH = 10_000  # nodes an alias may add beyond the document's own (merge keys, small reuse)
MAX_NUMBER_DIGITS = 1_000
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BodyError(ValueError):
    """The body cannot be used; status is 400 (bad content) or 415 (unsupported encoding)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode_text(raw: bytes, charset: str | None, where: str = "body") -> str:
    """UTF-8 by default; another declared charset (utf-16, latin-1...) is honoured; unknown ones are 415."""
    encoding = charset or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise BodyError(f"{where}: unknown charset {encoding!r}; send UTF-8", status=415) from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise BodyError(f"{where}: not valid {encoding} at byte {exc.start}: {exc.reason}") from None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BodyError(f"JSON body: duplicate key {key!r}")
        out[key] = value
    return out


def _json_number(text: str) -> int | float:
    if len(text.lstrip("-").split(".")[0].split("e")[0].split("E")[0]) > MAX_NUMBER_DIGITS:
        raise BodyError(f"JSON body: number with more than {MAX_NUMBER_DIGITS} digits")
    return float(text) if any(c in text for c in ".eE") else int(text)


def json_files(text: str) -> list[tuple[str, str]]:
    """{"files": [{"name": ..., "text": ...}]} -> [(name, text)]."""
    shape = "expected {'files': [{name, text}]}"
    try:
        payload = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_int=_json_number, parse_float=_json_number
        )
    except RecursionError:
        raise BodyError("JSON body: nested too deep") from None
    except BodyError:
        raise
    except ValueError as exc:
        raise BodyError(f"bad JSON body: {exc}; {shape}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
        raise BodyError(f"bad JSON body: {shape}")
    files = []
    for index, entry in enumerate(payload["files"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise BodyError(f"bad JSON body: files[{index}]: expected an object with string 'name', 'text'")
        name = entry.get("name", f"<files[{index}]>")
        if not isinstance(name, str):
            raise BodyError(f"bad JSON body: files[{index}].name: expected a string")
        files.append((name, entry["text"]))
    return files


def check_yaml(name: str, text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, alias bombs and huge integers (syntax errors: the loader's)."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    frames: list[list[Any]] = []  # [anchor, expanded count] per open collection
    literal = expanded = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                if len(frames) >= MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise BodyError(f"{name}: line {line}: nested more than {MAX_DEPTH} levels deep")
                frames.append([event.anchor, 1])
                literal += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = frames.pop()
                _add(frames, sizes, anchor, size)
            elif isinstance(event, yaml.ScalarEvent):
                literal += 1
                if event.implicit[0] and _long_integer(event.value):
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise BodyError(f"{name}: line {line}: number with more than {MAX_NUMBER_DIGITS} digits")
                _add(frames, sizes, event.anchor, 1)
            elif isinstance(event, yaml.AliasEvent):
                _add(frames, sizes, None, sizes.get(event.anchor or "", 1))
            elif isinstance(event, yaml.DocumentEndEvent):
                expanded += sizes.pop("", 0)
            growth = max(frames[0][1] if frames else 0, expanded) - literal
            if growth > MAX_ALIAS_GROWTH:
                raise BodyError(f"{name}: aliases add over {MAX_ALIAS_GROWTH} nodes (a YAML bomb?)")
    except yaml.YAMLError:
        return


def _add(frames: list[list[Any]], sizes: dict[str, int], anchor: str | None, size: int) -> None:
    if anchor:
        sizes[anchor] = size
    if frames:
        frames[-1][1] += size
    else:
        sizes[""] = sizes.get("", 0) + size  # a document's root


def _long_integer(value: str) -> bool:
    digits = value.lstrip("+-").replace("_", "")
    return len(digits) > MAX_NUMBER_DIGITS and digits.isdigit()
