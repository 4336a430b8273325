"""The accepted config set: documents keyed by (kind, namespace, name), a version, all-or-nothing changes.

A change (apply, delete, or a source replacing its full set) is planned against a copy, compiled as a whole
and only then committed: first to the backend (one durable transaction), then to the in-memory view the
proxies are served from. A refused change writes nothing, so the last good config keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from xds.controlplane.store.base import ChangeRecord, StoreBackend, StoredDocument, StoreError, VersionRecord
from xds.controlplane.store.memory import MemoryBackend
from xds.controlplane.store.plan import (
    OWNER_API,
    Change,
    CompileFn,
    CompileResultLike,
    InputRefresh,
    Key,
    Plan,
    plan_change,
    same_body,
)
from xds.diagnostics import Diagnostic, Location
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.sources import RawDocument


class Resolver(Protocol):
    def resolving(self, previous: ResolvedInputs, refresh: InputRefresh) -> Callable[[Any], ResolvedInputs]:
        """A function of the compiled model (MeshConfig) giving its inputs: `previous`'s copies are reused
        unless `refresh` says to fetch/read them again."""
        ...

    def credentials_differ(self, config: Any, inputs: ResolvedInputs) -> bool:
        """The credential files no longer hold what `inputs` recorded for `config` (the leader's check)."""
        ...


class ConfigStore:
    def __init__(
        self, compile_fn: CompileFn, backend: StoreBackend | None = None, resolver: Resolver | None = None
    ) -> None:
        """resolver: resolves the inputs a change names (JWKS, credential files: xds/controlplane/inputs.py);
        compile_fn then takes inputs= (resolved inputs, or a function of the model giving them)."""
        self._compile = compile_fn
        self.resolver = resolver
        self.inputs: ResolvedInputs = EMPTY_INPUTS  # those of the current version
        self.backend: StoreBackend = backend if backend is not None else MemoryBackend()
        self._docs: dict[Key, RawDocument] = {}
        self._owners: dict[Key, str] = {}
        self.version = 0
        self.result: CompileResultLike = compile_fn([])
        # owners whose documents a watched folder may take over (folders no longer watched, at start)
        self.adoptable: frozenset[str] = frozenset()
        # called once the served set changed (load, commit): e.g. the redactor learns its secret values
        self.on_change: Callable[[], None] | None = None

    async def load(self) -> list[Diagnostic]:
        """Read the backend and compile what it holds (off the event loop): the stored version is served
        as it was accepted. Returns the compiler's diagnostics (a store written by an older compiler may hold
        what this one now refuses: it is served anyway, and the diagnostics say why it would be refused)."""
        state = await self.backend.load()
        docs = {d.key: d.raw() for d in state.documents}
        if docs:  # served with the inputs stored with it: nothing is fetched or read again here
            result = await asyncio.to_thread(self._compile_with, list(docs.values()), state.inputs)
        else:
            result = self.result
        self._docs = docs
        self._owners = {d.key: d.owner for d in state.documents}
        self.version = state.version
        self.inputs = state.inputs
        self.result = result
        self._changed()
        return list(result.diagnostics)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def close(self) -> None:
        await self.backend.close()

    async def history(self) -> list[VersionRecord]:
        return await self.backend.history()

    async def refresh(self) -> bool:
        """Catch up with a shared backend whose head moved (another replica wrote): True when a newer version
        was loaded. Never goes back: the head only grows."""
        head = getattr(self.backend, "head", None)
        if head is None or await head() <= self.version:
            return False
        await self.load()
        return True

    async def plan_rollback(self, version: int) -> Plan:
        """The document set (and owners) of `version` as a new change; StoreError when the backend cannot
        give it (unknown or compacted version)."""
        if version < 1 or version > self.version:
            raise StoreError(f"version {version} is not in the history (the config is at {self.version})")
        state = await self.backend.documents_at(version)
        old = {d.key: d for d in state.documents}
        docs = dict(self._docs)
        owners = dict(self._owners)
        added, modified, removed = [], [], []
        for key, stored in old.items():
            raw = stored.raw()
            if key not in docs:
                added.append(key)
            elif owners.get(key) != stored.owner or not same_body(docs[key].body, raw.body):
                modified.append(key)
            docs[key] = raw
            owners[key] = stored.owner
        for key in [k for k in docs if k not in old]:
            del docs[key]
            del owners[key]
            removed.append(key)
        change = Change(tuple(sorted(added)), tuple(sorted(modified)), tuple(sorted(removed)))
        plan = Plan(docs, owners, change, source=f"rollback:{version}", written=tuple(sorted(old)))
        plan.inputs = state.inputs  # the JWKS/certificates of that version come back too
        return plan

    def plan_refresh_inputs(self, source: str, refresh: InputRefresh) -> Plan:
        """The same documents with inputs resolved again (JWKS refresh, a credential file changed): a new
        version when they differ, recorded as `source` (inputs:...)."""
        plan = Plan(dict(self._docs), dict(self._owners), Change(), source=source)
        plan.refresh = refresh
        return plan

    @property
    def config(self) -> Any:
        return self.result.config

    @property
    def documents(self) -> Mapping[Key, RawDocument]:
        return dict(self._docs)

    def owner(self, key: Key) -> str:
        return self._owners.get(key, "")

    def sources(self) -> set[str]:
        return set(self._owners.values())

    def plan_apply(
        self, docs: Iterable[RawDocument], source: str, load_diagnostics: Iterable[Diagnostic] = ()
    ) -> Plan:
        """Merge docs over the current set (same key replaces; another owner's key is refused)."""
        return plan_change(self._docs, self._owners, docs, (), source, list(load_diagnostics))

    def plan_delete(
        self, keys: Iterable[Key], source: str = OWNER_API, where: Mapping[Key, Location] | None = None
    ) -> Plan:
        """Remove keys (`where` names the request document of each, for a conflict's diagnostic)."""
        places = where or {}
        removals = [(k, places.get(k) or Location(kind=k[0], namespace=k[1], name=k[2])) for k in keys]
        return plan_change(self._docs, self._owners, (), removals, source, [])

    def plan_replace_source(
        self, source: str, docs: Iterable[RawDocument], load_diagnostics: Iterable[Diagnostic] = ()
    ) -> Plan:
        """GitOps: docs are the complete set for `source`; its documents missing from docs are removed."""
        docs = list(docs)
        incoming = {d.key for d in docs}
        gone = [
            (k, Location(kind=k[0], namespace=k[1], name=k[2]))
            for k, owner in self._owners.items()
            if owner == source and k not in incoming
        ]
        return plan_change(
            self._docs, self._owners, docs, gone, source, list(load_diagnostics), self.adoptable
        )

    def evaluate(self, plan: Plan) -> Plan:
        """Resolve the inputs the candidate set names and compile it (skipped when planning already found
        errors). Off the event loop: may run in a thread (resolving may fetch a JWKS)."""
        if not plan.ok or (plan.change.empty and plan.refresh is None and plan.inputs is None):
            return plan
        docs = list(plan.documents.values())
        if self.resolver is None:
            plan.result = self._compile(docs)
            return plan
        given: ResolvedInputs | Callable[[Any], ResolvedInputs] | None = plan.inputs
        if given is None:
            given = self.resolver.resolving(self.inputs, plan.refresh or InputRefresh())
        plan.result = self._compile_with(docs, given)
        config = plan.result.config if plan.result.ok else None
        if config is not None:
            plan.inputs = config.inputs
            plan.change = replace(plan.change, inputs=plan.inputs.changes_from(self.inputs))
        return plan

    def _compile_with(self, docs: list[RawDocument], inputs: Any) -> CompileResultLike:
        if self.resolver is None:
            return self._compile(docs)
        compile_inputs: Any = self._compile
        return compile_inputs(docs, inputs=inputs)  # type: ignore[no-any-return]

    async def commit(self, plan: Plan) -> int:
        """Make an evaluated, ok plan current: durable in the backend first, then served. Returns the new
        version (unchanged when nothing changed). A backend failure (StoreError) leaves both untouched."""
        if not plan.ok:
            raise ValueError("refusing to commit a plan with errors")
        if plan.change.empty:
            return self.version
        assert plan.result is not None, "evaluate() before commit()"
        version = self.version + 1
        inputs = plan.inputs if plan.inputs is not None else self.inputs
        record = ChangeRecord(
            VersionRecord(version, time.time(), plan.source, plan.change),
            [StoredDocument.of(plan.documents[k], plan.owners[k]) for k in plan.written],
            plan.change.removed,
            inputs,
        )
        await self.backend.save(record)
        self._docs, self._owners = plan.documents, plan.owners
        self.result = plan.result
        self.inputs = inputs
        self.version = version
        self._changed()
        return version

    def docs_of_kind(self, *kinds: str) -> list[RawDocument]:
        return sorted((d for d in self._docs.values() if d.kind in kinds), key=lambda d: d.key)
