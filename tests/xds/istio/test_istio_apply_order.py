"""Istio's samples applied one file at a time, in any order, as a team moves its Istio folder: every file is
accepted (a route to a host or subset that is not there yet is a warning, as istiod accepts it), and the
final Envoy config is byte-identical to applying the final set at once (issue #14 item 2)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from istio_helpers import proxy

from xds import types
from xds.controlplane.store import ConfigStore
from xds.diagnostics import Severity
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.sources import RawDocument

SAMPLES = sorted((Path(__file__).parent.parent / "istio_samples").glob("*.yaml"))
PROXIES = [proxy("default-client"), proxy("testns-client", namespace="testns")]


def load(path: Path) -> list[RawDocument]:
    docs, diags = load_text(path.read_text(), path.name)
    assert not diags, [str(d) for d in diags]
    return docs


async def apply(store: ConfigStore, docs: list[RawDocument]) -> list[str]:
    """Apply like `mecha apply`; returns the refusals (errors), empty when accepted."""
    plan = store.evaluate(store.plan_apply(docs, "api"))
    refusals = [str(d) for d in plan.all_diagnostics() if d.severity is Severity.ERROR]
    if plan.ok:
        await store.commit(plan)
    return refusals


def envoy_config(store: ConfigStore, proxies: list[ProxyIdentity]) -> dict[tuple[str, str, str], bytes]:
    snapshots = SnapshotBuilder().build(store.config, proxies)
    return {
        (pid, short, name): resource.body
        for pid, snap in snapshots.items()
        for short in ("CDS", "EDS", "LDS", "RDS")
        for name, resource in snap.of(types.FROM_SHORT[short]).items()
    }


def test_the_corpus_has_the_files_that_used_to_be_refused_alone() -> None:
    assert len(SAMPLES) >= 9
    refused_alone = [p.name for p in SAMPLES if not compile_documents(load(p), strict=True).ok]
    assert refused_alone  # routes to hosts/subsets defined by other files: refused before (and with --strict)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_samples_one_file_at_a_time_in_random_order(seed: int) -> None:
    order = list(SAMPLES)
    random.Random(seed).shuffle(order)
    one_by_one = ConfigStore(compile_documents)
    for path in order:
        assert await apply(one_by_one, load(path)) == [], f"{path.name} refused (order {seed})"
    final: dict[tuple[str, str, str], RawDocument] = {}
    for path in order:  # same-named documents (the two ratings VirtualServices): the last applied stays
        final.update((d.key, d) for d in load(path))
    at_once = ConfigStore(compile_documents)
    assert await apply(at_once, list(final.values())) == []
    assert set(one_by_one.documents) == set(at_once.documents)
    sequential, together = envoy_config(one_by_one, PROXIES), envoy_config(at_once, PROXIES)
    assert sequential.keys() == together.keys() and len(sequential) > 10
    assert [k for k in sequential if sequential[k] != together[k]] == []
