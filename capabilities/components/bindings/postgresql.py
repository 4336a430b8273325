"""bindings.postgresql: an output binding running SQL (Dapr's bindings.postgresql).

Metadata `connectionString` (or `url`). Operations: `exec` (metadata sql, optional params as a JSON array
for $1..$n) -> metadata rows-affected; `query` -> JSON array of rows (each an array of column values);
`close` closes the pool (it reopens on the next call).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from capabilities.blocks.bindings.contract import (
    BindingBackendError,
    BindingRequestError,
    Feature,
    InvokeRequest,
    InvokeResponse,
)
from capabilities.blocks.pubsub import metadata as md
from capabilities.daprspec.component import ComponentSpec
from capabilities.registry import register


def _params(request: InvokeRequest) -> list[Any]:
    raw = request.metadata.get("params", "")
    if not raw:
        return []
    try:
        params = json.loads(raw)
    except ValueError as exc:
        raise BindingRequestError(f"metadata params is not JSON: {exc}") from None
    if not isinstance(params, list):
        raise BindingRequestError("metadata params must be a JSON array")
    return params


def _jsonable(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)  # datetimes, decimals, uuids...


@register("bindings.postgresql")
class PostgresBinding:
    def __init__(self, spec: ComponentSpec):
        self.spec = spec
        self.dsn = md.get_str(spec, "connectionString") or md.get_str(spec, "url", required=True)
        self._pool: asyncpg.Pool | None = None

    async def init(self) -> None:
        await self._connect()

    async def _connect(self) -> asyncpg.Pool:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise BindingBackendError(f"postgresql is not reachable: {exc}") from exc
        return self._pool

    def features(self) -> set[str]:
        return {Feature.OUTPUT}

    def operations(self) -> list[str]:
        return ["exec", "query", "close"]

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation == "close":
            await self.close()
            return InvokeResponse()
        sql = request.metadata.get("sql", "")
        if not sql:
            raise BindingRequestError("metadata sql is required")
        params = _params(request)
        pool = self._pool or await self._connect()
        start = datetime.now(UTC)
        began = time.perf_counter()
        try:
            async with pool.acquire() as conn:
                if request.operation == "exec":
                    status = await conn.execute(sql, *params)
                    rows_affected = status.rsplit(" ", 1)[-1] if status.rsplit(" ", 1)[-1].isdigit() else "0"
                    data = b""
                    extra = {"rows-affected": rows_affected}
                else:
                    records = await conn.fetch(sql, *params)
                    data = json.dumps([_jsonable(list(r.values())) for r in records]).encode()
                    extra = {}
        except asyncpg.PostgresError as exc:
            raise BindingRequestError(f"{request.operation} failed: {exc}") from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            raise BindingBackendError(f"postgresql: {exc}") from exc
        meta = {
            "operation": request.operation,
            "sql": sql,
            "start-time": start.isoformat(),
            "end-time": datetime.now(UTC).isoformat(),
            "duration": f"{(time.perf_counter() - began) * 1000:.3f}ms",
            **extra,
        }
        return InvokeResponse(data, meta, "application/json" if data else "")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
