"""EnvoyFilter and WasmPlugin are reported as dropped (issue #14 item 8): `apply` accepts the
folder with a warning naming the document, and `mecha analyze` exits 1, as for anything it cannot honour.
Telemetry's tracing is honoured now; its metrics/accessLogging are reported per field
(tests/xds/tracing)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from xds.analyze.report import analyze_paths, render_text
from xds.cli.main import main as mecha
from xds.diagnostics import Severity
from xds.pipeline import compile_documents, load_text

DROPPED = {
    "EnvoyFilter": """apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: default}
spec:
  configPatches: [{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFORE, value: {name: envoy.lua}}}]
""",
    "WasmPlugin": """apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: openid, namespace: default}
spec:
  url: oci://example.com/openid:latest
""",
}
SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
"""


@pytest.mark.parametrize("kind", sorted(DROPPED))
def test_apply_accepts_with_a_warning_naming_the_document(kind: str) -> None:
    docs, diags = load_text(SERVICE + "---\n" + DROPPED[kind], "istio.yaml")
    assert not diags
    result = compile_documents(docs)
    assert result.ok
    warnings = [d for d in result.diagnostics if d.code == "dropped-kind"]
    assert len(warnings) == 1 and warnings[0].severity is Severity.WARNING
    text = str(warnings[0])
    assert kind in text and "istio.yaml" in text and "not honoured" in text


@pytest.mark.parametrize("kind", sorted(DROPPED))
def test_analyze_exits_1_and_says_dropped(kind: str, tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(SERVICE + "---\n" + DROPPED[kind])
    report = analyze_paths([tmp_path])
    assert report.would_drop
    rendered = render_text(report)
    assert "dropped: " in rendered and kind in rendered and "result: something would be dropped" in rendered
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = mecha(["analyze", "-f", str(tmp_path)])
    assert rc == 1, out.getvalue()


def test_kinds_only_skipped_stay_quiet(tmp_path: Path) -> None:
    """Kubernetes objects next to mesh config are skipped, not dropped: analyze still exits 0."""
    (tmp_path / "mesh.yaml").write_text(
        SERVICE + "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reviews, namespace: default}\n"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = mecha(["analyze", "-f", str(tmp_path)])
    assert rc == 0, out.getvalue()
