"""Fuzzing: random and mutated YAML never crashes the loader, the model or the translator: it yields
Diagnostics (or a config that translates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from istio_helpers import compile_text, proxy

from xds.diagnostics import Diagnostic
from xds.pipeline import SnapshotBuilder, load_text

SAMPLES = sorted((Path(__file__).parent.parent / "istio_samples").glob("*.yaml"))
GOLDEN = sorted((Path(__file__).parent.parent / "config" / "golden").glob("*.in.yaml"))
SEEDS = [p.read_text() for p in SAMPLES + GOLDEN]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _all_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _all_paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _all_paths(v, (*path, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], tuple(rest), value)}
    copy = list(node)
    copy[head] = _replace(node[head], tuple(rest), value)
    return copy


def _translate_if_ok(text: str) -> None:
    result = compile_text(text, "fuzz.yaml")
    assert all(isinstance(d, Diagnostic) for d in result.diagnostics)
    for d in result.errors:
        assert d.location.file == "fuzz.yaml" and d.message
    if result.config is not None:
        who = proxy(tcp_ports={"443": 20443, "9000": 20900})
        SnapshotBuilder().build(result.config, [who])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    _docs, diags = load_text(text, "fuzz.yaml")
    assert all(isinstance(d, Diagnostic) for d in diags)
    _translate_if_ok(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.data())
def test_mutated_istio_yaml_yields_diagnostics_not_crashes(seed: int, data: st.DataObject) -> None:
    docs = [d for d in yaml.safe_load_all(SEEDS[seed]) if d is not None]
    index = data.draw(st.integers(0, len(docs) - 1))
    paths = _all_paths(docs[index])
    path = data.draw(st.sampled_from(paths))
    docs[index] = _replace(docs[index], path, data.draw(values))
    _translate_if_ok(yaml.safe_dump_all(docs))
