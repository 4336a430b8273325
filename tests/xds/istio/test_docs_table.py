"""docs/migration-from-istio.md carries the honoured-fields table generated from the field tables."""

from __future__ import annotations

from pathlib import Path

from xds.analyze.doc_table import BEGIN, END, istio_kinds, markdown_table, splice

DOC = Path(__file__).resolve().parents[3] / "docs" / "migration-from-istio.md"


def test_doc_table_matches_the_field_tables() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    assert splice(text) == text, "stale table: run .venv/bin/python -m xds.analyze.doc_table --write " + str(
        DOC
    )


def test_table_lists_every_istio_kind_with_a_field_table() -> None:
    table = markdown_table()
    for kind in ("VirtualService", "DestinationRule", "ServiceEntry", "Sidecar", "WorkloadEntry"):
        assert kind in istio_kinds() and f"### {kind}" in table
    assert "| `spec.http[].fault.abort.percent` | **no** |" in table
    assert "| `spec.http[].mirrorPercent` | differently |" in table
