"""State query API (v1.0-alpha1): parse the query document, and evaluate it in Python for simple stores."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from typing import Any

from capabilities.blocks.state.contract import Query, QueryError, QueryItem, QueryResult

COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE")
OPERATORS = (*COMPARISONS, "IN", "AND", "OR")
_MISSING = object()


def _check_filter(flt: Any, where: str) -> None:
    if not isinstance(flt, dict) or len(flt) != 1:
        raise QueryError(f"{where}: a filter is an object with exactly one of {', '.join(OPERATORS)}")
    ((op, arg),) = flt.items()
    if op not in OPERATORS:
        raise QueryError(f"{where}: unknown filter operator {op!r} (known: {', '.join(OPERATORS)})")
    if op in ("AND", "OR"):
        if not isinstance(arg, list) or not arg:
            raise QueryError(f"{where}.{op}: expected a non-empty list of filters")
        for index, sub in enumerate(arg):
            _check_filter(sub, f"{where}.{op}[{index}]")
        return
    if not isinstance(arg, dict) or len(arg) != 1:
        raise QueryError(f'{where}.{op}: expected an object with exactly one field, e.g. {{"state": "CA"}}')
    ((path, value),) = arg.items()
    if not isinstance(path, str) or not path:
        raise QueryError(f"{where}.{op}: field name must be a non-empty string")
    if op == "IN" and (not isinstance(value, list) or not value):
        raise QueryError(f"{where}.IN.{path}: expected a non-empty list of values")


def parse_query(doc: Any) -> Query:
    if not isinstance(doc, dict):
        raise QueryError("query: expected a JSON object with filter, sort and page")
    unknown = set(doc) - {"filter", "sort", "page"}
    if unknown:
        raise QueryError(f"query: unknown field(s) {', '.join(sorted(unknown))}")
    flt = doc.get("filter")
    if flt is not None and flt != {}:
        _check_filter(flt, "query.filter")
    else:
        flt = None
    sort: list[tuple[str, bool]] = []
    for index, entry in enumerate(doc.get("sort") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise QueryError(f'query.sort[{index}]: expected {{"key": ..., "order": "ASC"|"DESC"}}')
        order = str(entry.get("order", "ASC")).upper()
        if order not in ("ASC", "DESC"):
            raise QueryError(f"query.sort[{index}].order: must be ASC or DESC, got {entry.get('order')!r}")
        sort.append((entry["key"], order == "DESC"))
    page = doc.get("page") or {}
    if not isinstance(page, dict):
        raise QueryError('query.page: expected {"limit": N, "token": "..."}')
    limit = page.get("limit", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise QueryError(f"query.page.limit: must be a non-negative integer, got {limit!r}")
    token = page.get("token")
    if token is not None:
        token = str(token)
        decode_token(token)
    return Query(filter=flt, sort=tuple(sort), limit=limit, token=token)


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(token)
    except ValueError:
        raise QueryError(f"query.page.token: {token!r} is not a token returned by a previous query") from None
    if offset < 0:
        raise QueryError(f"query.page.token: {token!r} is not a token returned by a previous query")
    return offset


def lookup(doc: Any, path: str) -> Any:
    current = doc
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return _MISSING
    return current


def _rank(value: Any) -> tuple[int, Any]:
    """Total order over JSON values: numbers < strings < booleans < others, missing last."""
    if value is _MISSING or value is None:
        return (9, 0)
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, json.dumps(value, sort_keys=True))


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is _MISSING:
        return op == "NEQ"
    if op == "EQ":
        return bool(left == right)
    if op == "NEQ":
        return bool(left != right)
    a, b = _rank(left), _rank(right)
    if a[0] != b[0]:
        return False
    return {"GT": a > b, "GTE": a >= b, "LT": a < b, "LTE": a <= b}[op]


def matches(doc: Any, flt: dict[str, Any] | None) -> bool:
    if flt is None:
        return True
    ((op, arg),) = flt.items()
    if op == "AND":
        return all(matches(doc, sub) for sub in arg)
    if op == "OR":
        return any(matches(doc, sub) for sub in arg)
    ((path, value),) = arg.items()
    found = lookup(doc, path)
    if op == "IN":
        return found is not _MISSING and found in value
    return _compare(op, found, value)


Row = tuple[str, bytes, str, Any]  # key without prefix, value bytes, etag, parsed JSON document


def _rank_at(path: str, row: Row) -> tuple[int, Any]:
    return _rank(lookup(row[3], path))


def run_query(rows: Iterable[tuple[str, bytes, str]], query: Query) -> QueryResult:
    """Evaluate `query` over (key without prefix, value bytes, etag); values that are not JSON never match."""
    selected: list[Row] = []
    for key, raw, etag in rows:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if matches(doc, query.filter):
            selected.append((key, raw, etag, doc))
    selected.sort(key=lambda row: row[0])
    for path, descending in reversed(query.sort):
        present = [r for r in selected if lookup(r[3], path) not in (_MISSING, None)]
        absent = [r for r in selected if lookup(r[3], path) in (_MISSING, None)]
        present.sort(key=partial(_rank_at, path), reverse=descending)
        selected = present + absent
    offset = decode_token(query.token)
    end = offset + query.limit if query.limit else len(selected)
    page = selected[offset:end]
    token = str(end) if query.limit and end < len(selected) else None
    return QueryResult([QueryItem(k, v, e) for k, v, e, _ in page], token)
