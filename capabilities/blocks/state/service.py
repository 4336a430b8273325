"""State service: key scheme, resiliency and the ONE mapping of store errors to Dapr errors for this block."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar, cast

from capabilities.blocks.state.contract import (
    DeleteRequest,
    ETagError,
    Feature,
    Operation,
    Querier,
    Query,
    QueryError,
    QueryResult,
    SetRequest,
    Store,
    StoredItem,
    TransactionalStore,
    with_key,
)
from capabilities.blocks.state.keys import check_key, key_prefix
from capabilities.errors import DaprError

if TYPE_CHECKING:
    from capabilities.runtime import Runtime

T = TypeVar("T")


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 400 else text[:400] + "..."


def map_state_error(exc: BaseException, code: str, message: str) -> DaprError:
    """Store/runtime exception -> DaprError. `message` already names the operation and the store."""
    if isinstance(exc, DaprError):
        return exc
    if isinstance(exc, ETagError):
        status, grpc = (409, "ABORTED") if exc.kind == "mismatch" else (400, "INVALID_ARGUMENT")
        return DaprError(code, f"{message}: {exc}", status, grpc)
    if isinstance(exc, QueryError):
        return DaprError("ERR_MALFORMED_REQUEST", f"{message}: {exc}", 400, "INVALID_ARGUMENT")
    return DaprError(code, f"{message}: {describe(exc)}", 500, "INTERNAL")


@dataclass(frozen=True)
class BulkItem:
    key: str
    item: StoredItem | None
    error: str | None = None


class StateService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _resolve(self, store_name: str) -> tuple[Store, str]:
        store = self.runtime.component("state", store_name)
        spec = self.runtime.component_spec(store_name)
        metadata = spec.metadata if spec is not None else {}
        namespace = spec.namespace if spec is not None else "default"
        prefix = key_prefix(metadata.get("keyPrefix"), self.runtime.app_id, store_name, namespace)
        return store, prefix

    async def _run(self, store_name: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.runtime.resiliency.for_component(store_name, "outbound").run(fn)

    async def get(self, store_name: str, key: str) -> StoredItem | None:
        store, prefix = self._resolve(store_name)
        check_key(key, store_name)
        try:
            return await self._run(store_name, lambda: store.get(prefix + key))
        except Exception as exc:
            raise map_state_error(
                exc, "ERR_STATE_GET", f"fail to get {key} from state store {store_name}"
            ) from exc

    async def bulk_get(self, store_name: str, keys: list[str], parallelism: int = 10) -> list[BulkItem]:
        store, prefix = self._resolve(store_name)
        for key in keys:
            check_key(key, store_name)
        limit = asyncio.Semaphore(max(1, parallelism))

        async def one(key: str) -> BulkItem:
            async with limit:
                try:
                    return BulkItem(key, await self._run(store_name, lambda: store.get(prefix + key)))
                except Exception as exc:
                    return BulkItem(key, None, describe(exc))

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def save(self, store_name: str, requests: list[SetRequest]) -> None:
        store, prefix = self._resolve(store_name)
        for req in requests:
            check_key(req.key, store_name)
        for req in requests:
            prefixed = with_key(req, prefix + req.key)
            try:
                await self._run(store_name, partial(store.set, prefixed))
            except Exception as exc:
                raise map_state_error(
                    exc, "ERR_STATE_SAVE", f"failed saving state in state store {store_name}"
                ) from exc

    async def delete(self, store_name: str, req: DeleteRequest) -> None:
        store, prefix = self._resolve(store_name)
        check_key(req.key, store_name)
        prefixed = with_key(req, prefix + req.key)
        try:
            await self._run(store_name, lambda: store.delete(prefixed))
        except Exception as exc:
            message = f"failed deleting state with key {req.key}: state store {store_name}"
            raise map_state_error(exc, "ERR_STATE_DELETE", message) from exc

    def _require(self, store: Store, store_name: str, feature: Feature, what: str) -> None:
        if feature not in store.features():
            raise DaprError(
                "ERR_STATE_STORE_NOT_SUPPORTED", f"state store {store_name} doesn't support {what}", 500
            )

    async def transact(self, store_name: str, operations: list[Operation]) -> None:
        store, prefix = self._resolve(store_name)
        self._require(store, store_name, Feature.TRANSACTIONAL, "transaction")
        transactional = cast(TransactionalStore, store)  # what declaring TRANSACTIONAL promises
        for op in operations:
            check_key(op.key, store_name)
        prefixed = [with_key(op, prefix + op.key) for op in operations]
        try:
            await self._run(store_name, lambda: transactional.multi(prefixed))
        except Exception as exc:
            message = f"error while executing state transaction: state store {store_name}"
            raise map_state_error(exc, "ERR_STATE_TRANSACTION", message) from exc

    async def query(self, store_name: str, query: Query) -> QueryResult:
        store, prefix = self._resolve(store_name)
        if Feature.QUERY_API not in store.features():
            raise DaprError(
                "ERR_STATE_STORE_NOT_SUPPORTED", f"state store {store_name} does not support querying", 500
            )
        querier = cast(Querier, store)  # what declaring QUERY_API promises
        try:
            return await self._run(store_name, lambda: querier.query(prefix, query))
        except Exception as exc:
            raise map_state_error(
                exc, "ERR_STATE_QUERY", f"failed query in state store {store_name}"
            ) from exc
