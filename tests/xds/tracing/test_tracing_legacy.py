"""Istio's legacy tracing config (meshConfig.enableTracing + defaultConfig.tracing.zipkin) is not turned into
an Envoy tracer: the mesh config is accepted with a warning naming the field, and nothing is traced."""

from __future__ import annotations

from xds.pipeline import compile_documents, load_text

LEGACY = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    enableTracing: true
    defaultConfig:
      tracing:
        sampling: 100
        zipkin: {address: zipkin.istio-system:9411}
"""


def test_legacy_zipkin_tracing_warns_naming_the_field() -> None:
    docs, diags = load_text(LEGACY, "mesh.yaml")
    assert not diags
    result = compile_documents(docs)
    assert result.ok, [str(d) for d in result.errors]
    warned = [d for d in result.diagnostics if d.code == "unsupported"]
    assert [d.field for d in warned] == ["data.mesh.defaultConfig.tracing.zipkin.address"]
    assert "zipkin.istio-system:9411" in warned[0].message and "extensionProviders" in warned[0].message


def test_legacy_tracing_turned_off_is_not_reported() -> None:
    docs, _ = load_text(LEGACY.replace("enableTracing: true", "enableTracing: false"), "mesh.yaml")
    result = compile_documents(docs)
    assert result.ok and not [d for d in result.diagnostics if d.code == "unsupported"]
