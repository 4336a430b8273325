"""What every config-store backend guarantees (run against each backend of conftest.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from xds.controlplane.store import (
    OWNER_API,
    OWNER_CONFLICT,
    ChangeRecord,
    ConfigStore,
    StoredDocument,
    StoreError,
    StoreVersionConflict,
    VersionRecord,
    folder_owner,
)
from xds.controlplane.store.plan import Change
from xds.diagnostics import Diagnostic, Severity
from xds.sources import RawDocument, load_text

FOLDER = folder_owner("/srv/config")


@dataclass
class Result:
    config: Any
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


def compile_docs(docs: list[RawDocument]) -> Result:
    """Refuses a document whose spec says bad: true (as a validation error would)."""
    bad = [Diagnostic(d.location, "spec.bad", "bad") for d in docs if d.body.get("spec", {}).get("bad")]
    return Result(sorted(d.key for d in docs), bad)


def doc(name: str, value: Any = 1, bad: bool = False, file: str = "") -> RawDocument:
    text = (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
        f"spec: {{value: {value}, bad: {str(bad).lower()}}}\n"
    )
    docs, diags = load_text(text, file or f"{name}.yaml")
    assert not diags
    return docs[0]


async def accept(store: ConfigStore, plan: Any) -> int:
    plan = store.evaluate(plan)
    assert plan.ok, plan.all_diagnostics()
    return await store.commit(plan)


async def opened(backends: Any) -> ConfigStore:
    store = ConfigStore(compile_docs, backends.open())
    await store.load()
    return store


def view(store: ConfigStore) -> dict[tuple[str, str, str], tuple[str, Any, str, int]]:
    return {
        k: (store.owner(k), d.body, d.location.file, d.location.document) for k, d in store.documents.items()
    }


async def test_versions_are_monotonic_one_row_per_change(backends: Any) -> None:
    store = await opened(backends)
    assert store.version == 0
    assert await accept(store, store.plan_apply([doc("a")], OWNER_API)) == 1
    assert await accept(store, store.plan_apply([doc("a", value=2), doc("b")], OWNER_API)) == 2
    assert await accept(store, store.plan_delete([("VirtualService", "default", "a")])) == 3
    history = await store.history()
    assert [v.version for v in history] == [1, 2, 3]
    assert [v.source for v in history] == [OWNER_API] * 3
    assert history[1].change.added == (("VirtualService", "default", "b"),)
    assert history[1].change.modified == (("VirtualService", "default", "a"),)
    assert history[2].change.removed == (("VirtualService", "default", "a"),)
    assert all(a.at <= b.at for a, b in itertools.pairwise(history))


async def test_reopen_serves_the_same_version_and_documents(backends: Any) -> None:
    store = await opened(backends)
    await accept(store, store.plan_replace_source(FOLDER, [doc("f1"), doc("f2", value=[1, "x"])]))
    await accept(store, store.plan_apply([doc("api1", value={"nested": True})], OWNER_API))
    await store.close()
    again = await opened(backends)  # a second connection on the same record: the change is there
    assert again.version == store.version == 2
    assert view(again) == view(store)
    assert again.config == store.config  # compiled again from what was stored


async def test_refused_change_writes_nothing(backends: Any) -> None:
    store = await opened(backends)
    await accept(store, store.plan_apply([doc("a")], OWNER_API))
    plan = store.evaluate(store.plan_apply([doc("a", value=9), doc("b", bad=True)], OWNER_API))
    assert not plan.ok
    with pytest.raises(ValueError):
        await store.commit(plan)
    again = await opened(backends)
    assert again.version == 1 and len(await again.history()) == 1
    assert list(again.documents) == [("VirtualService", "default", "a")]
    assert again.documents[("VirtualService", "default", "a")].body["spec"]["value"] == 1


async def test_unchanged_change_writes_no_version(backends: Any) -> None:
    store = await opened(backends)
    await accept(store, store.plan_replace_source(FOLDER, [doc("a"), doc("b")]))
    assert await accept(store, store.plan_replace_source(FOLDER, [doc("a"), doc("b")])) == 1
    assert await accept(store, store.plan_apply([], FOLDER)) == 1
    assert len(await store.history()) == 1


async def test_unchanged_folder_after_restart_writes_no_version(backends: Any) -> None:
    store = await opened(backends)
    # a YAML date and int keys do not survive JSON as the same Python values: still the same document
    odd = load_text(
        "apiVersion: v1\nkind: VirtualService\nmetadata: {name: odd}\nspec: {at: 2024-05-01, n: 1.5}\n",
        "o.yaml",
    )[0]
    await accept(store, store.plan_replace_source(FOLDER, [doc("a"), *odd]))
    again = await opened(backends)
    plan = again.evaluate(again.plan_replace_source(FOLDER, [doc("a"), *odd]))
    assert plan.ok and plan.change.empty
    assert await again.commit(plan) == 1


async def test_owner_conflicts_both_ways_write_nothing(backends: Any) -> None:
    store = await opened(backends)
    await accept(store, store.plan_replace_source(FOLDER, [doc("from-folder")]))
    await accept(store, store.plan_apply([doc("from-api")], OWNER_API))
    api_edit = store.evaluate(store.plan_apply([doc("from-folder", value=2)], OWNER_API))
    api_delete = store.evaluate(store.plan_delete([("VirtualService", "default", "from-folder")]))
    folder_edit = store.evaluate(
        store.plan_replace_source(
            FOLDER, [doc("from-folder"), doc("from-api", value=3, file="/srv/config/x.yaml")]
        )
    )
    for plan in (api_edit, api_delete, folder_edit):
        assert not plan.ok and plan.conflict == "owner"
        [diag] = plan.all_diagnostics()
        assert diag.code == OWNER_CONFLICT
    assert "owned by " + FOLDER in api_edit.all_diagnostics()[0].message
    folder_diag = folder_edit.all_diagnostics()[0]
    assert folder_diag.location.file == "/srv/config/x.yaml" and "owned by api" in folder_diag.message
    again = await opened(backends)
    assert again.version == 2 and view(again) == view(store)
    assert again.owner(("VirtualService", "default", "from-api")) == OWNER_API


async def test_save_refuses_a_version_out_of_sequence(backends: Any) -> None:
    backend = backends.open()
    await backend.load()
    stale = ChangeRecord(
        VersionRecord(2, 0.0, OWNER_API, Change(added=(("VirtualService", "default", "x"),))),
        [StoredDocument.of(doc("x"), OWNER_API)],
        (),
    )
    with pytest.raises(StoreVersionConflict):
        await backend.save(stale)
    state = await backend.load()
    assert state.version == 0 and list(state.documents) == []


async def test_documents_at_each_version_and_rollback_plan(backends: Any) -> None:
    store = await opened(backends)
    await accept(store, store.plan_apply([doc("a"), doc("b")], OWNER_API))  # 1
    await accept(store, store.plan_apply([doc("a", value=2), doc("c")], OWNER_API))  # 2
    await accept(store, store.plan_delete([("VirtualService", "default", "b")]))  # 3
    at_1 = await store.backend.documents_at(1)
    assert {d.key[2]: d.body["spec"]["value"] for d in at_1.documents} == {"a": 1, "b": 1}
    at_2 = await store.backend.documents_at(2)
    assert {d.key[2]: d.body["spec"]["value"] for d in at_2.documents} == {"a": 2, "b": 1, "c": 1}
    plan = store.evaluate(await store.plan_rollback(1))
    assert plan.ok and plan.source == "rollback:1"
    assert plan.change.added == (("VirtualService", "default", "b"),)
    assert plan.change.modified == (("VirtualService", "default", "a"),)
    assert plan.change.removed == (("VirtualService", "default", "c"),)
    assert await store.commit(plan) == 4
    again = await opened(backends)  # the rollback is a new version like any other
    assert {k[2]: d.body["spec"]["value"] for k, d in again.documents.items()} == {"a": 1, "b": 1}
    assert (await again.history())[-1].source == "rollback:1"
    with pytest.raises(StoreError):
        await again.plan_rollback(9)
