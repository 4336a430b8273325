"""docs/migration-from-istio.md carries the honoured-fields table generated from the field tables, and its
"What differs" prose generated from xds/analyze/differences.py, whose claims the field tables confirm."""

from __future__ import annotations

from pathlib import Path

from xds.analyze.differences import Claim, Difference, contradictions
from xds.analyze.doc_table import BEGIN, DIFF_BEGIN, DIFF_END, END, istio_kinds, markdown_table, splice

DOC = Path(__file__).resolve().parents[3] / "docs" / "migration-from-istio.md"


def test_doc_table_matches_the_field_tables() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    assert DIFF_BEGIN in text and DIFF_END in text  # the prose about differences is generated too
    assert splice(text) == text, "stale table: run .venv/bin/python -m xds.analyze.doc_table --write " + str(
        DOC
    )


def test_table_lists_every_istio_kind_with_a_field_table() -> None:
    table = markdown_table()
    for kind in ("VirtualService", "DestinationRule", "ServiceEntry", "Sidecar", "WorkloadEntry"):
        assert kind in istio_kinds() and f"### {kind}" in table
    assert "| `spec.http[].fault.abort.percent` | **no** |" in table
    assert "| `spec.http[].mirrorPercent` | differently |" in table


def test_the_prose_and_the_field_table_say_the_same() -> None:
    assert contradictions() == []
    # what the prose said before it was generated: "localityLbSetting ... not implemented"
    stale = Difference("Locality", "not implemented", (Claim("DestinationRule", LOCALITY, "unsupported"),))
    assert contradictions([stale]) == [
        f"Locality: DestinationRule {LOCALITY} is honoured, the prose says unsupported"
    ]


LOCALITY = "spec.trafficPolicy.loadBalancer.localityLbSetting"
