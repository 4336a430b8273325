"""Planning a change against the accepted set: pure, no I/O (ConfigStore evaluates and persists it).

Every document has one owner: `api` (mecha apply/delete) or `folder:<path>` (a watched folder). A change
from another owner is refused as a whole with an `owner-conflict` diagnostic, so a folder re-read never
silently undoes an API edit, or the reverse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from xds.diagnostics import Diagnostic, Location, Severity
from xds.gatewayapi.kinds import is_gateway_api
from xds.gatewayapi.metadata import with_generation
from xds.inputs import ResolvedInputs
from xds.sources import RawDocument

Key = tuple[str, str, str]  # (kind, namespace, name)

OWNER_API = "api"
OWNER_CONFLICT = "owner-conflict"  # diagnostic code: answered 409 by the API
VERSION_CONFLICT = "version-conflict"  # diagnostic code: ?expected_version= is not the current version


class CompileResultLike(Protocol):
    config: Any
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool: ...


CompileFn = Callable[[list[RawDocument]], CompileResultLike]


def key_str(key: Key) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}"


def folder_owner(path: object) -> str:
    return f"folder:{path}"


def same_body(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal bodies, also when one came back from the store's JSON (a YAML date is a string there)."""
    if old == new:
        return True
    try:
        return _canonical(old) == _canonical(new)
    except (TypeError, ValueError):  # e.g. mixed key types: not comparable, so treat as changed
        return False


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, default=str)


@dataclass(frozen=True)
class Change:
    added: tuple[Key, ...] = ()
    modified: tuple[Key, ...] = ()
    removed: tuple[Key, ...] = ()
    not_found: tuple[Key, ...] = ()  # delete of documents the store does not hold
    inputs: tuple[str, ...] = ()  # resolved inputs that changed: "jwks <uri>", "credential <name>"

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed or self.inputs)

    def to_dict(self) -> dict[str, list[str]]:
        out = {
            "added": [key_str(k) for k in self.added],
            "modified": [key_str(k) for k in self.modified],
            "removed": [key_str(k) for k in self.removed],
            "not_found": [key_str(k) for k in self.not_found],
        }
        if self.inputs:
            out["inputs"] = list(self.inputs)
        return out

    def record(self) -> dict[str, Any]:
        """What a backend stores of it (JSON): `Change.of_record` reads it back."""
        out: dict[str, Any] = {"added": self.added, "modified": self.modified, "removed": self.removed}
        if self.inputs:
            out["inputs"] = self.inputs
        return out

    @classmethod
    def of_record(cls, summary: Mapping[str, Any]) -> Change:
        def keys(raw: list[Any]) -> tuple[Key, ...]:
            return tuple((str(k[0]), str(k[1]), str(k[2])) for k in raw)

        return cls(
            keys(summary.get("added", [])),
            keys(summary.get("modified", [])),
            keys(summary.get("removed", [])),
            inputs=tuple(str(i) for i in summary.get("inputs", [])),
        )


@dataclass(frozen=True)
class InputRefresh:
    """Which resolved inputs a change fetches / reads again instead of reusing the stored copy."""

    jwks: bool = False
    credentials: bool = False


@dataclass
class Plan:
    """A candidate document set; nothing is committed until ConfigStore.commit()."""

    documents: dict[Key, RawDocument]
    owners: dict[Key, str]
    change: Change
    diagnostics: list[Diagnostic] = field(
        default_factory=list
    )  # load/duplicate/owner problems found while planning
    result: CompileResultLike | None = None
    source: str = ""  # who asked: `api` or `folder:<path>` (recorded with the version)
    written: tuple[Key, ...] = ()  # documents this change (re)writes, changed or not (their file may move)
    strict: bool = False  # refuse what istiod accepts with a warning (`mecha apply --strict`)
    earlier: list[Diagnostic] = field(default_factory=list)  # the accepted config's, before this change
    # the JWKS/credentials this version is compiled with: None until evaluated (resolved then), preset by a
    # rollback (the inputs of the version it returns to)
    inputs: ResolvedInputs | None = None
    refresh: InputRefresh | None = None  # re-resolve inputs although no document changed (source inputs:...)

    def with_strict(self, strict: bool) -> Plan:
        self.strict = strict
        return self

    @property
    def ok(self) -> bool:
        load_ok = not any(d.severity is Severity.ERROR for d in self.diagnostics)
        return load_ok and (self.result is None or self.result.ok)

    @property
    def conflict(self) -> str:
        """`owner` / `version` when the refusal is a conflict (HTTP 409), else ''."""
        codes = {d.code for d in self.diagnostics}
        if VERSION_CONFLICT in codes:
            return "version"
        return "owner" if OWNER_CONFLICT in codes else ""

    def all_diagnostics(self) -> list[Diagnostic]:
        return [*self.diagnostics, *(self.result.diagnostics if self.result else [])]


def _owner_conflict(where: Location, key: Key, owner: str, source: str) -> Diagnostic:
    if owner == OWNER_API:
        how = "delete it with `mecha delete` first, or remove it from this folder"
    else:
        how = f"edit or remove it in that folder ({owner.removeprefix('folder:')})"
    verb = "this folder" if source.startswith("folder:") else "the API"
    return Diagnostic(
        where,
        "metadata.name",
        f"{key_str(key)} is owned by {owner}; {verb} cannot change it: {how}",
        Severity.ERROR,
        OWNER_CONFLICT,
    )


# ---- creationTimestamp: Istio orders config by it (the oldest VirtualService of a host wins) --------------


def created_now() -> str:
    """Kubernetes' metadata.creationTimestamp format (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _created(doc: RawDocument) -> str:
    meta = doc.body.get("metadata")
    found = meta.get("creationTimestamp") if isinstance(meta, dict) else None
    return str(found) if found else ""


def with_creation_timestamp(doc: RawDocument, old: RawDocument | None, now: str) -> RawDocument:
    """An Istio document keeps the creationTimestamp it carries, else the stored one, else gets `now` (first
    accept). Stored in the body, so every backend keeps it across restarts."""
    istio = doc.api_version.split("/", 1)[0].endswith(".istio.io")
    if not (istio or is_gateway_api(doc.api_version)) or _created(doc):  # Gateway API: route precedence
        return doc
    meta = doc.body.get("metadata")
    if not isinstance(meta, dict):
        return doc  # refused by the compiler anyway
    stamp = (_created(old) if old is not None else "") or now
    return replace(doc, body={**doc.body, "metadata": {**meta, "creationTimestamp": stamp}})


def plan_change(
    documents: Mapping[Key, RawDocument],
    owners: Mapping[Key, str],
    upserts: Iterable[RawDocument],
    removals: Iterable[tuple[Key, Location]],
    source: str,
    diags: list[Diagnostic],
    adoptable: frozenset[str] = frozenset(),
    now: str = "",
) -> Plan:
    """The candidate set after `source` writes upserts and removes removals (owner rules checked). A folder
    may take over the documents of an `adoptable` owner (a folder no longer watched: the config moved)."""
    docs, owned = dict(documents), dict(owners)
    now = now or created_now()
    added: list[Key] = []
    modified: list[Key] = []
    removed: list[Key] = []
    not_found: list[Key] = []
    written: list[Key] = []
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
        owner = owned.get(key)
        adopted = owner in adoptable and source.startswith("folder:")
        if owner is not None and owner != source and not adopted:
            diags.append(_owner_conflict(doc.location, key, owner, source))
            continue
        old = docs.get(key)
        if old is not None and old.group != doc.group:  # a key has no group: Istio / Gateway API Gateway
            msg = f"{key_str(key)} already exists as {old.api_version}: delete it first (it would be lost)"
            diags.append(Diagnostic(doc.location, "apiVersion", msg, Severity.ERROR, "duplicate"))
            continue
        doc = with_creation_timestamp(doc, old, now)
        doc = with_generation(doc, old)  # Gateway API: status reports it as observedGeneration
        if old is None:
            added.append(key)
        elif adopted or not same_body(old.body, doc.body):  # a new owner is a change to record
            modified.append(key)
        docs[key] = doc
        owned[key] = source
        written.append(key)
    for key, where in removals:
        owner = owned.get(key)
        if owner is None:
            not_found.append(key)
        elif owner != source:
            diags.append(_owner_conflict(where, key, owner, source))
        else:
            del docs[key]
            del owned[key]
            removed.append(key)
    change = Change(tuple(added), tuple(modified), tuple(removed), tuple(not_found))
    return Plan(docs, owned, change, diags, source=source, written=tuple(written))
