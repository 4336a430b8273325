"""The persistence seam of the config store (go-control-plane style: the durable record is separate from the
in-memory compiled view that ConfigStore serves).

A backend keeps the accepted document set, each document's owner, and one row per version saying what
changed. `save` is one transaction that lands before the API answers; the backend refuses it when the stored
version is not the one the change was planned against, so two writers can never interleave versions.
Backends: SqliteBackend (embedded, the default), MemoryBackend (tests, no state folder); a PostgreSQL
backend implements the same Protocol and passes the same conformance suite
(tests/xds/controlplane/store_conformance/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from xds.controlplane.store.plan import Change, Key
from xds.diagnostics import Location
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.sources import RawDocument


class StoreError(ValueError):
    """The store cannot be opened or written (corrupt file, newer schema, disk error): the message names the
    file and the reason. A ValueError, so `mecha serve` reports it as a start-up failure."""


class StoreVersionConflict(StoreError):
    """The stored version moved on since the change was planned (another writer on the same store)."""


@dataclass(frozen=True)
class StoredDocument:
    """One accepted document as persisted: the YAML body, where it was read from, and its owner."""

    key: Key
    owner: str
    api_version: str
    body: Mapping[str, Any]
    file: str
    document: int  # index in a multi-document file
    text: str = ""  # the document's YAML text as received (the compiler's content fingerprint)

    @classmethod
    def of(cls, doc: RawDocument, owner: str) -> StoredDocument:
        return cls(
            doc.key, owner, doc.api_version, doc.body, doc.location.file, doc.location.document, doc.source
        )

    def raw(self) -> RawDocument:
        kind, namespace, name = self.key
        where = Location(self.file, self.document, kind, namespace, name)
        return RawDocument(where, self.api_version, kind, dict(self.body), self.text)


@dataclass(frozen=True)
class VersionRecord:
    """One accepted change: its version, when (unix seconds), who made it, and what it changed."""

    version: int
    at: float
    source: str
    change: Change


@dataclass(frozen=True)
class StoredState:
    version: int  # 0: nothing accepted yet
    documents: Sequence[StoredDocument] = field(default_factory=tuple)
    inputs: ResolvedInputs = EMPTY_INPUTS  # the JWKS/credentials this version was accepted with


@dataclass(frozen=True)
class ChangeRecord:
    """What one accepted change writes: the new version, its upserted and removed documents."""

    version: VersionRecord
    upserts: Sequence[StoredDocument]
    removed: Sequence[Key]
    inputs: ResolvedInputs = EMPTY_INPUTS  # stored in the same transaction, keyed by content hash


class StoreBackend(Protocol):
    """Durable record of the accepted config. Every method may block on I/O, so all are async."""

    @property
    def location(self) -> str:
        """Where the record lives (a file path, a DSN without secrets): for messages."""
        ...

    async def load(self) -> StoredState:
        """Open (create when new, refuse a corrupt or newer-schema store with StoreError) and read it."""
        ...

    async def save(self, record: ChangeRecord) -> None:
        """One transaction; durable when it returns. StoreVersionConflict when the stored version is not
        record.version.version - 1 (nothing is written then)."""
        ...

    async def history(self) -> list[VersionRecord]:
        """Every accepted version, oldest first."""
        ...

    async def documents_at(self, version: int) -> StoredState:
        """The document set right after `version` (rollback); StoreError when unknown or compacted."""
        ...

    async def close(self) -> None: ...
