"""The accepted config set: documents keyed by (kind, namespace, name), a version, all-or-nothing changes.

A change (apply, delete, or a source replacing its full set) is planned against a copy, compiled as a whole
and only then committed; a refused change leaves the store untouched, so the last good config keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from xds.diagnostics import Diagnostic, Location, Severity
from xds.sources import RawDocument

Key = tuple[str, str, str]  # (kind, namespace, name)


class CompileResultLike(Protocol):
    config: Any
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool: ...


CompileFn = Callable[[list[RawDocument]], CompileResultLike]


def key_str(key: Key) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}"


@dataclass(frozen=True)
class Change:
    added: tuple[Key, ...] = ()
    modified: tuple[Key, ...] = ()
    removed: tuple[Key, ...] = ()
    not_found: tuple[Key, ...] = ()  # delete of documents the store does not hold

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "added": [key_str(k) for k in self.added],
            "modified": [key_str(k) for k in self.modified],
            "removed": [key_str(k) for k in self.removed],
            "not_found": [key_str(k) for k in self.not_found],
        }


@dataclass
class Plan:
    """A candidate document set; nothing is committed until ConfigStore.commit()."""

    documents: dict[Key, RawDocument]
    owners: dict[Key, str]
    change: Change
    diagnostics: list[Diagnostic] = field(
        default_factory=list
    )  # load/duplicate problems found while planning
    result: CompileResultLike | None = None

    @property
    def ok(self) -> bool:
        load_ok = not any(d.severity is Severity.ERROR for d in self.diagnostics)
        return load_ok and (self.result is None or self.result.ok)

    def all_diagnostics(self) -> list[Diagnostic]:
        return [*self.diagnostics, *(self.result.diagnostics if self.result else [])]


class ConfigStore:
    def __init__(self, compile_fn: CompileFn) -> None:
        self._compile = compile_fn
        self._docs: dict[Key, RawDocument] = {}
        self._owners: dict[Key, str] = {}
        self.version = 0
        self.result: CompileResultLike = compile_fn([])

    @property
    def config(self) -> Any:
        return self.result.config

    @property
    def documents(self) -> Mapping[Key, RawDocument]:
        return dict(self._docs)

    def owner(self, key: Key) -> str:
        return self._owners.get(key, "")

    def plan_apply(
        self, docs: Iterable[RawDocument], source: str, load_diagnostics: Iterable[Diagnostic] = ()
    ) -> Plan:
        """Merge docs over the current set (same key replaces)."""
        return self._plan(docs, (), source, list(load_diagnostics))

    def plan_delete(self, keys: Iterable[Key]) -> Plan:
        return self._plan((), keys, "", [])

    def plan_replace_source(
        self, source: str, docs: Iterable[RawDocument], load_diagnostics: Iterable[Diagnostic] = ()
    ) -> Plan:
        """GitOps: docs are the complete set for `source`; its documents missing from docs are removed."""
        docs = list(docs)
        incoming = {d.key for d in docs}
        gone = [k for k, owner in self._owners.items() if owner == source and k not in incoming]
        return self._plan(docs, gone, source, list(load_diagnostics))

    def _plan(
        self, upserts: Iterable[RawDocument], removals: Iterable[Key], source: str, diags: list[Diagnostic]
    ) -> Plan:
        documents, owners = dict(self._docs), dict(self._owners)
        added: list[Key] = []
        modified: list[Key] = []
        removed: list[Key] = []
        not_found: list[Key] = []
        seen: dict[Key, Location] = {}
        for doc in upserts:
            key = doc.key
            if key in seen:
                diags.append(
                    Diagnostic(
                        doc.location,
                        "metadata.name",
                        f"{key_str(key)} is defined twice in this change (first in {seen[key]})",
                        Severity.ERROR,
                        "duplicate",
                    )
                )
                continue
            seen[key] = doc.location
            old = documents.get(key)
            if old is None:
                added.append(key)
            elif old.body != doc.body:
                modified.append(key)
            documents[key] = doc
            owners[key] = source
        for key in removals:
            if key in documents:
                del documents[key]
                owners.pop(key, None)
                removed.append(key)
            else:
                not_found.append(key)
        change = Change(tuple(added), tuple(modified), tuple(removed), tuple(not_found))
        return Plan(documents, owners, change, diags)

    def evaluate(self, plan: Plan) -> Plan:
        """Compile the whole candidate set (skipped when planning already found errors)."""
        if plan.ok and not plan.change.empty:
            plan.result = self._compile(list(plan.documents.values()))
        return plan

    def commit(self, plan: Plan) -> int:
        """Make an evaluated, ok plan current; returns the new version (unchanged when nothing changed)."""
        if not plan.ok:
            raise ValueError("refusing to commit a plan with errors")
        if plan.change.empty:
            return self.version
        assert plan.result is not None, "evaluate() before commit()"
        self._docs, self._owners = plan.documents, plan.owners
        self.result = plan.result
        self.version += 1
        return self.version

    def docs_of_kind(self, *kinds: str) -> list[RawDocument]:
        return sorted((d for d in self._docs.values() if d.kind in kinds), key=lambda d: d.key)
