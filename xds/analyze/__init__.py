"""`mecha analyze`: what Mecha does with every field of every resource in a folder of Istio/Dapr YAML."""

from xds.analyze.report import (
    AnalyzeReport,
    FieldReport,
    SkippedKind,
    analyze_documents,
    analyze_paths,
    render_json,
    render_text,
)

__all__ = [
    "AnalyzeReport",
    "FieldReport",
    "SkippedKind",
    "analyze_documents",
    "analyze_paths",
    "render_json",
    "render_text",
]
