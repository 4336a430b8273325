"""State store contract (after components-contrib state/store.go): a minimal Store plus optional capabilities.

Keys reaching a store are already prefixed (`<appId>||<key>`); values are opaque bytes (JSON text from the
HTTP API). ETags are opaque strings produced by the store; every store returns one on get.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, overload, runtime_checkable


class Feature(StrEnum):
    ETAG = "ETAG"
    TRANSACTIONAL = "TRANSACTIONAL"
    QUERY_API = "QUERY_API"
    TTL = "TTL"


@dataclass(frozen=True)
class StoredItem:
    value: bytes
    etag: str


@dataclass(frozen=True)
class SetRequest:
    key: str
    value: bytes
    etag: str | None = None
    first_write: bool = False  # options.concurrency == "first-write": without etag, the key must not exist
    ttl_seconds: int | None = None  # None = no expiry; -1 = never expire (explicit)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    first_write: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


Operation = SetRequest | DeleteRequest


@overload
def with_key(op: SetRequest, key: str) -> SetRequest: ...
@overload
def with_key(op: DeleteRequest, key: str) -> DeleteRequest: ...
@overload
def with_key(op: Operation, key: str) -> Operation: ...
def with_key(op: Operation, key: str) -> Operation:
    """The same request under another key (the store's prefixed one). dataclasses.replace does this too but
    introspects the fields on every call: this runs once per state write."""
    if type(op) is SetRequest:
        return SetRequest(key, op.value, op.etag, op.first_write, op.ttl_seconds, op.metadata)
    if type(op) is DeleteRequest:
        return DeleteRequest(key, op.etag, op.first_write, op.metadata)
    return replace(op, key=key)  # a subclass: keep its type and fields


@dataclass(frozen=True)
class Query:
    filter: dict[str, Any] | None
    sort: tuple[tuple[str, bool], ...] = ()  # (path, descending)
    limit: int = 0  # 0 = all
    token: str | None = None


@dataclass(frozen=True)
class QueryItem:
    key: str  # without the prefix
    value: bytes
    etag: str


@dataclass(frozen=True)
class QueryResult:
    results: list[QueryItem]
    token: str | None = None


class ETagError(Exception):
    """An optimistic-concurrency failure: kind 'mismatch' (HTTP 409) or 'invalid' (400). Never retried."""

    permanent = True

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def etag_mismatch(key: str) -> ETagError:
    return ETagError(
        "mismatch", f"possible etag mismatch. error from state store: etag mismatch for key {key}"
    )


def etag_invalid(etag: str) -> ETagError:
    return ETagError("invalid", f"invalid etag value: {etag!r} is not an etag issued by this store")


def parse_version_etag(etag: str) -> int:
    """Stores in this package use an integer version as ETag; anything else is malformed."""
    try:
        version = int(etag)
    except ValueError:
        raise etag_invalid(etag) from None
    if version < 0:
        raise etag_invalid(etag)
    return version


def check_version(key: str, current: int | None, etag: str | None, first_write: bool) -> None:
    """OCC rule shared by the version-numbered stores: a given etag must equal the current version;
    first-write without an etag requires the key to be absent; otherwise last write wins."""
    if etag:
        if current is None or parse_version_etag(etag) != current:
            parse_version_etag(etag)  # malformed beats missing: 400 rather than 409
            raise etag_mismatch(key)
    elif first_write and current is not None:
        raise etag_mismatch(key)


class QueryError(ValueError):
    """The query document is malformed (HTTP 400)."""

    permanent = True


@runtime_checkable
class Store(Protocol):
    async def init(self) -> None: ...
    async def close(self) -> None: ...
    def features(self) -> set[str]: ...
    async def get(self, key: str) -> StoredItem | None: ...
    async def set(self, req: SetRequest) -> None: ...
    async def delete(self, req: DeleteRequest) -> None: ...


@runtime_checkable
class TransactionalStore(Store, Protocol):
    async def multi(self, operations: list[Operation]) -> None:
        """All operations or none; an ETag failure on any of them aborts the whole transaction."""
        ...


@runtime_checkable
class Querier(Store, Protocol):
    async def query(self, key_prefix: str, query: Query) -> QueryResult: ...
