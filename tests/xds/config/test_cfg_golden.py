"""Golden tests: golden/<case>.in.yaml -> <case>.<CDS|EDS|LDS|RDS>.yaml (proto3 JSON as YAML).

Regenerate with `pytest tests/xds/config --update-golden`; never edit the outputs by hand. Each case is
also translated through the naive reference path, which must decode to exactly the same resources.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cfg_helpers import compile_text, decoded, errors, sidecar

from xds.pipeline import SnapshotBuilder
from xds.translate import build_naive

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
SHORTS = ("CDS", "EDS", "LDS", "RDS")


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    text = (GOLDEN / f"{case}.in.yaml").read_text()
    result = compile_text(text, f"{case}.in.yaml")
    assert result.config is not None, [str(d) for d in errors(result)]
    proxy = sidecar()
    snap = SnapshotBuilder().build(result.config, [proxy])[proxy.id]
    naive = build_naive(result.config, proxy)
    for short in SHORTS:
        got = decoded(snap, short)
        assert got == decoded(naive, short), f"{case} {short}: fast path differs from the reference path"
        path = GOLDEN / f"{case}.{short}.yaml"
        rendered = yaml.safe_dump(got, sort_keys=False, width=120)
        if update_golden:
            path.write_text(rendered)
        assert path.exists(), f"missing {path.name}: run pytest tests/xds/config --update-golden"
        assert yaml.safe_load(path.read_text()) == got, f"{path.name} differs from the translation"


def test_no_orphan_golden_outputs() -> None:
    for path in GOLDEN.glob("*.yaml"):
        if path.name.endswith(".in.yaml"):
            continue
        case, short, _ = path.name.rsplit(".", 2)
        assert case in CASES and short in SHORTS, f"orphan golden file {path.name}"
