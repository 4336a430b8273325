"""ConfigStore: merge, atomic refusal, deletes, GitOps source replacement, versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xds.controlplane.store import ConfigStore
from xds.diagnostics import Diagnostic, Location, Severity
from xds.sources import RawDocument, load_text


@dataclass
class FakeResult:
    config: Any
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


def fake_compile(docs: list[RawDocument]) -> FakeResult:
    """Refuses any document whose spec says bad: true, like a validation error would."""
    diags = [
        Diagnostic(d.location, "spec.bad", "this document is bad")
        for d in docs
        if d.body.get("spec", {}).get("bad")
    ]
    return FakeResult(sorted(d.key for d in docs), diags)


def doc(name: str, kind: str = "VirtualService", bad: bool = False, value: int = 1) -> RawDocument:
    text = (
        f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
        f"spec: {{bad: {str(bad).lower()}, value: {value}}}\n"
    )
    docs, diags = load_text(text, f"{name}.yaml")
    assert not diags
    return docs[0]


async def commit(store: ConfigStore, plan) -> None:  # type: ignore[no-untyped-def]
    plan = store.evaluate(plan)
    assert plan.ok, plan.all_diagnostics()
    await store.commit(plan)


async def test_apply_merges_and_bumps_version() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_apply([doc("a"), doc("b")], "api"))
    assert store.version == 1
    plan = store.evaluate(store.plan_apply([doc("b", value=2), doc("c")], "api"))
    assert plan.change.added == (("VirtualService", "default", "c"),)
    assert plan.change.modified == (("VirtualService", "default", "b"),)
    await store.commit(plan)
    assert store.version == 2
    assert store.config == [("VirtualService", "default", n) for n in "abc"]


async def test_unchanged_apply_keeps_version() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_apply([doc("a")], "api"))
    plan = store.evaluate(store.plan_apply([doc("a")], "api"))
    assert plan.ok and plan.change.empty
    assert await store.commit(plan) == 1


async def test_refused_change_leaves_store_untouched() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_apply([doc("a")], "api"))
    plan = store.evaluate(store.plan_apply([doc("a", value=5), doc("b", bad=True)], "api"))
    assert not plan.ok
    [diag] = plan.all_diagnostics()
    assert diag.location.file == "b.yaml" and diag.field == "spec.bad"
    try:
        await store.commit(plan)
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("commit of a refused plan must raise")
    assert store.version == 1
    assert store.documents[("VirtualService", "default", "a")].body["spec"]["value"] == 1


async def test_duplicate_key_in_one_change_is_refused() -> None:
    store = ConfigStore(fake_compile)
    plan = store.evaluate(store.plan_apply([doc("a"), doc("a", value=2)], "api"))
    assert not plan.ok
    assert "defined twice" in plan.all_diagnostics()[0].message


async def test_load_errors_refuse_the_whole_change() -> None:
    store = ConfigStore(fake_compile)
    broken = Diagnostic(Location(file="x.yaml"), "", "malformed YAML at line 3")
    plan = store.evaluate(store.plan_apply([doc("a")], "api", [broken]))
    assert not plan.ok and store.version == 0


async def test_delete_reports_missing_and_removes_present() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_apply([doc("a"), doc("b")], "api"))
    plan = store.evaluate(
        store.plan_delete([("VirtualService", "default", "a"), ("VirtualService", "default", "zz")])
    )
    assert plan.change.removed == (("VirtualService", "default", "a"),)
    assert plan.change.not_found == (("VirtualService", "default", "zz"),)
    await store.commit(plan)
    assert list(store.documents) == [("VirtualService", "default", "b")]


async def test_replace_source_removes_only_that_sources_documents() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_replace_source("folder:/x", [doc("a"), doc("b")]))
    await commit(store, store.plan_apply([doc("api-owned")], "api"))
    plan = store.evaluate(store.plan_replace_source("folder:/x", [doc("b", value=3)]))
    assert plan.change.removed == (("VirtualService", "default", "a"),)
    assert plan.change.modified == (("VirtualService", "default", "b"),)
    await store.commit(plan)
    assert sorted(k[2] for k in store.documents) == ["api-owned", "b"]
    assert store.owner(("VirtualService", "default", "api-owned")) == "api"


async def test_docs_of_kind_filters_and_sorts() -> None:
    store = ConfigStore(fake_compile)
    await commit(store, store.plan_apply([doc("z", "Component"), doc("a", "Component"), doc("v")], "api"))
    assert [d.key[2] for d in store.docs_of_kind("Component")] == ["a", "z"]
