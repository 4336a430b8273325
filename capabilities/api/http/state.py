"""State API: /v1.0/state/{store}[/{key}|/bulk|/transaction], /v1.0-alpha1/state/{store}/query."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from capabilities.api.http.common import (
    empty,
    json_response,
    malformed,
    query_metadata,
    raw_json_response,
    read_json,
    require_object,
    string_map,
)
from capabilities.blocks.state.contract import DeleteRequest, Operation, QueryError, SetRequest
from capabilities.blocks.state.query import parse_query
from capabilities.blocks.state.service import StateService
from capabilities.errors import DaprError

CONCURRENCY = ("first-write", "last-write", "")
CONSISTENCY = ("strong", "eventual", "")


# One encoder for every value: json.dumps with these options builds a new JSONEncoder on each call.
_VALUE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _encode_value(value: Any) -> bytes:
    return _VALUE_ENCODER.encode(value).encode()


def _decode_value(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def _options(options: Any, where: str) -> bool:
    """Validate options{concurrency, consistency}; True when concurrency is first-write."""
    if options is None:
        return False
    options = require_object(options, where)
    concurrency = options.get("concurrency") or ""
    consistency = options.get("consistency") or ""
    if concurrency not in CONCURRENCY:
        raise malformed(f"{where}.concurrency: must be first-write or last-write, got {concurrency!r}")
    if consistency not in CONSISTENCY:
        raise malformed(f"{where}.consistency: must be strong or eventual, got {consistency!r}")
    return concurrency == "first-write"


def _etag(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise malformed(f"{where}: must be a string")
    return str(value)


def _ttl(metadata: dict[str, str], where: str) -> int | None:
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise malformed(f"{where}.ttlInSeconds: must be an integer number of seconds, got {raw!r}") from None
    if ttl < -1:
        raise malformed(f"{where}.ttlInSeconds: must be -1 (never expire) or >= 0, got {ttl}")
    return ttl


def _set_request(item: Any, where: str) -> SetRequest:
    item = require_object(item, where)
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise malformed(f"{where}.key: a non-empty string is required")
    metadata = string_map(item.get("metadata"), f"{where}.metadata")
    return SetRequest(
        key=key,
        value=_encode_value(item.get("value")),
        etag=_etag(item.get("etag"), f"{where}.etag"),
        first_write=_options(item.get("options"), f"{where}.options"),
        ttl_seconds=_ttl(metadata, f"{where}.metadata"),
        metadata=metadata,
    )


def _delete_request(item: Any, where: str) -> DeleteRequest:
    item = require_object(item, where)
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise malformed(f"{where}.key: a non-empty string is required")
    return DeleteRequest(
        key=key,
        etag=_etag(item.get("etag"), f"{where}.etag"),
        first_write=_options(item.get("options"), f"{where}.options"),
        metadata=string_map(item.get("metadata"), f"{where}.metadata"),
    )


def add_routes(app: web.Application, service: StateService) -> None:
    async def get_state(request: web.Request) -> web.Response:
        store, key = request.match_info["store"], request.match_info["key"]
        if request.query.get("consistency", "") not in CONSISTENCY:
            raise malformed(f"consistency must be strong or eventual, got {request.query['consistency']!r}")
        item = await service.get(store, key)
        if item is None:
            return empty()
        return raw_json_response(item.value, headers={"ETag": item.etag})

    async def save_state(request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, list):
            raise malformed("expected a JSON array of {key, value, etag?, metadata?, options?}")
        await service.save(
            request.match_info["store"], [_set_request(i, f"[{n}]") for n, i in enumerate(body)]
        )
        return empty()

    async def delete_state(request: web.Request) -> web.Response:
        concurrency = request.query.get("concurrency", "")
        if concurrency not in CONCURRENCY:
            raise malformed(f"concurrency must be first-write or last-write, got {concurrency!r}")
        req = DeleteRequest(
            key=request.match_info["key"],
            etag=request.headers.get("If-Match") or None,
            first_write=concurrency == "first-write",
            metadata=query_metadata(request),
        )
        await service.delete(request.match_info["store"], req)
        return empty()

    async def bulk_get(request: web.Request) -> web.Response:
        body = require_object(await read_json(request), "body")
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise malformed("keys: expected a list of strings")
        parallelism = body.get("parallelism", 10)
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
            parallelism = 10
        results = []
        for entry in await service.bulk_get(request.match_info["store"], keys, parallelism):
            out: dict[str, Any] = {"key": entry.key}
            if entry.error is not None:
                out["error"] = entry.error
            elif entry.item is not None:
                out["data"] = _decode_value(entry.item.value)
                out["etag"] = entry.item.etag
            results.append(out)
        return json_response(results)

    async def transaction(request: web.Request) -> web.Response:
        body = require_object(await read_json(request), "body")
        operations = body.get("operations")
        if not isinstance(operations, list):
            raise malformed("operations: expected a list of {operation, request}")
        ops: list[Operation] = []
        for index, entry in enumerate(operations):
            where = f"operations[{index}]"
            entry = require_object(entry, where)
            kind = entry.get("operation")
            if kind == "upsert":
                ops.append(_set_request(entry.get("request"), f"{where}.request"))
            elif kind == "delete":
                ops.append(_delete_request(entry.get("request"), f"{where}.request"))
            else:
                raise DaprError(
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    f"operation type {kind} not supported",
                    400,
                    "INVALID_ARGUMENT",
                )
        await service.transact(request.match_info["store"], ops)
        return empty()

    async def query(request: web.Request) -> web.Response:
        try:
            parsed = parse_query(await read_json(request))
        except QueryError as exc:
            raise malformed(str(exc)) from None
        result = await service.query(request.match_info["store"], parsed)
        out: dict[str, Any] = {
            "results": [
                {"key": r.key, "data": _decode_value(r.value), "etag": r.etag} for r in result.results
            ]
        }
        if result.token:
            out["token"] = result.token
        return json_response(out)

    # aiohttp tries the resources under one prefix (/v1.0/state) in registration order, one regex each: the
    # hot get/save paths come first, and each path is one resource for all its methods (not one per method).
    # No two of these share a path AND a method, so the order does not change which handler answers.
    router = app.router
    routes: list[tuple[str, tuple[tuple[str, Any], ...]]] = [
        ("/v1.0/state/{store}/{key}", (("GET", get_state), ("DELETE", delete_state))),
        ("/v1.0/state/{store}", (("POST", save_state), ("PUT", save_state))),
        ("/v1.0/state/{store}/bulk", (("POST", bulk_get), ("PUT", bulk_get))),
        ("/v1.0/state/{store}/transaction", (("POST", transaction), ("PUT", transaction))),
        ("/v1.0-alpha1/state/{store}/query", (("POST", query), ("PUT", query))),
    ]
    for path, methods in routes:
        resource = router.add_resource(path)
        for method, handler in methods:
            resource.add_route(method, handler)
