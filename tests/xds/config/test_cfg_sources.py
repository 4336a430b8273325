"""Loading YAML: multi-document files, folders, malformed input, skipped kinds."""

from __future__ import annotations

from pathlib import Path

from cfg_helpers import compile_text

from xds.diagnostics import Severity
from xds.pipeline import load_paths, load_text

TWO_DOCS = """
# comment before the first marker
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec: {hosts: [a], ports: [{number: 80}]}
---
"apiVersion": "networking.istio.io/v1beta1"
kind: DestinationRule
metadata: {name: a, namespace: other, creationTimestamp: null}
spec: {host: a}
---
"""


def test_multi_document_text_keeps_index_kind_namespace_and_name() -> None:
    docs, diags = load_text(TWO_DOCS, "two.yaml")
    assert diags == []
    assert [(d.location.document, d.kind, d.location.namespace, d.location.name) for d in docs] == [
        (0, "ServiceEntry", "default", "a"),
        (1, "DestinationRule", "other", "a"),
    ]
    assert docs[0].key == ("ServiceEntry", "default", "a")
    assert docs[1].api_version == "networking.istio.io/v1beta1"


def test_malformed_document_reports_file_document_and_line_and_keeps_the_others() -> None:
    text = TWO_DOCS + "apiVersion: v1\nkind: [unclosed\nmetadata: {name: x}\n"
    docs, diags = load_text(text, "bad.yaml")
    assert len(docs) == 2
    assert len(diags) == 1
    d = diags[0]
    assert d.severity is Severity.ERROR
    assert d.location.file == "bad.yaml" and d.location.document == 2
    # libyaml flags the line where the unclosed flow sequence turns invalid: the one after `kind: [`
    bad_line = text.splitlines().index("metadata: {name: x}") + 1
    assert d.message.startswith(f"malformed YAML at line {bad_line}:"), d.message


def test_document_without_name_or_not_a_map_is_an_error() -> None:
    _, diags = load_text("kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: {}\n", "x.yaml")
    assert [(d.field, d.location.file) for d in diags] == [("metadata.name", "x.yaml")]
    _, diags = load_text("- just\n- a list\n", "y.yaml")
    assert "must be a map" in diags[0].message


def test_folders_are_read_recursively_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text(TWO_DOCS)
    (tmp_path / "a.yaml").write_text(TWO_DOCS.replace("name: a", "name: c"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    docs, diags = load_paths([tmp_path, tmp_path / "missing.yaml"])
    assert [Path(d.location.file).name for d in docs] == ["a.yaml", "a.yaml", "z.yml", "z.yml"]
    assert [d.message for d in diags] == ["no such file or directory"]


def test_foreign_kinds_are_skipped_with_an_info_diagnostic() -> None:
    result = compile_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n", "k8s.yaml")
    assert result.ok and result.config is not None
    assert [(loc.kind, loc.name) for loc in result.skipped] == [("Deployment", "web")]
    assert [d.severity for d in result.diagnostics] == [Severity.INFO]


def test_unsupported_api_version_of_a_known_kind_is_an_error() -> None:
    result = compile_text("apiVersion: networking.istio.io/v9\nkind: VirtualService\nmetadata: {name: x}\n")
    assert not result.ok
    assert result.diagnostics[0].field == "apiVersion"


def test_folder_skips_dot_entries_like_a_configmap_mount(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xds.sources.loader import load_paths

    vs = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a]}\n"
    (tmp_path / "..2026_11_26_09_00_00.1").mkdir()
    (tmp_path / "..2026_11_26_09_00_00.1" / "mesh.yaml").write_text(vs)
    (tmp_path / "mesh.yaml").write_text(vs)
    (tmp_path / ".mesh.yaml.swp.yaml").write_text("{{{ not yaml")
    docs, diags = load_paths([tmp_path])
    assert [d.location.file for d in docs] == [str(tmp_path / "mesh.yaml")]
    assert diags == []
