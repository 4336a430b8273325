"""A backend that keeps the record in this process only (tests and embedded use without a state folder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from xds.controlplane.store.base import (
    ChangeRecord,
    StoredDocument,
    StoredState,
    StoreError,
    StoreVersionConflict,
    VersionRecord,
)
from xds.controlplane.store.plan import Key
from xds.inputs import EMPTY_INPUTS, ResolvedInputs


@dataclass
class MemoryRecord:
    """The data itself: share one between MemoryBackends to model a reopen."""

    documents: dict[Key, StoredDocument] = field(default_factory=dict)
    versions: list[VersionRecord] = field(default_factory=list)
    states: dict[int, dict[Key, StoredDocument]] = field(default_factory=dict)  # after each version
    inputs: dict[int, ResolvedInputs] = field(default_factory=dict)  # each version's resolved inputs


class MemoryBackend:
    def __init__(self, record: MemoryRecord | None = None) -> None:
        self.record = record if record is not None else MemoryRecord()

    @property
    def location(self) -> str:
        return "memory"

    def _version(self) -> int:
        return self.record.versions[-1].version if self.record.versions else 0

    async def load(self) -> StoredState:
        version = self._version()
        inputs = self.record.inputs.get(version, EMPTY_INPUTS)
        return StoredState(version, tuple(self.record.documents.values()), inputs)

    async def save(self, record: ChangeRecord) -> None:
        current = self._version()
        if record.version.version != current + 1:
            raise StoreVersionConflict(
                f"config store {self.location}: holds version {current}, "
                f"refusing to write version {record.version.version}"
            )
        for doc in record.upserts:
            self.record.documents[doc.key] = doc
        for key in record.removed:
            self.record.documents.pop(key, None)
        self.record.versions.append(record.version)
        self.record.states[record.version.version] = dict(self.record.documents)
        self.record.inputs[record.version.version] = record.inputs

    async def documents_at(self, version: int) -> StoredState:
        if version not in self.record.states:
            raise StoreError(f"version {version} is not in the history")
        inputs = self.record.inputs.get(version, EMPTY_INPUTS)
        return StoredState(version, tuple(self.record.states[version].values()), inputs)

    async def history(self) -> list[VersionRecord]:
        return list(self.record.versions)

    async def close(self) -> None:
        return None
