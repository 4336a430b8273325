"""Facade used by the control plane: load -> model -> graph validation -> translate.

docs, diags = load_paths(["config/"])
result = compile_documents(docs)          # MeshConfig + diagnostics (errors refuse the config)
snapshots = SnapshotBuilder().build(result.config, proxies, changed_at, version)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xds.diagnostics import Diagnostic, Location, Severity
from xds.model.mesh import MeshConfig, build_mesh
from xds.model.security_checks import check_security
from xds.sources.loader import RawDocument
from xds.sources.loader import load_paths as _load_paths
from xds.sources.loader import load_text as _load_text
from xds.translate.builder import SnapshotBuilder
from xds.translate.decode import resource_to_dict
from xds.translate.resiliency import check_resiliencies
from xds.validate.checks import validate
from xds.validate.strict import promote_strict

__all__ = [
    "CompileResult",
    "RawDocument",
    "SnapshotBuilder",
    "compile_documents",
    "load_paths",
    "load_text",
    "resource_to_dict",
]


@dataclass
class CompileResult:
    config: MeshConfig | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: list[Location] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]


def compile_documents(docs: list[RawDocument], strict: bool = False) -> CompileResult:
    """Model + graph validation. config is None when any error was found (the config is refused). strict:
    references istiod accepts with a warning (missing host/subset/port, a younger duplicate) are refused."""
    model = build_mesh(docs)
    diags = list(model.diagnostics)
    diags += promote_strict(validate(model.config)) if strict else validate(model.config)
    diags += check_security(model.config)  # security kinds + Gateway
    diags += check_resiliencies(model.config.resiliencies)  # Dapr policies Envoy cannot express
    ok = not any(d.severity is Severity.ERROR for d in diags)
    return CompileResult(model.config if ok else None, diags, model.skipped)


def load_paths(paths: list[str | Path]) -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_paths(paths)


def load_text(text: str, filename: str = "<inline>") -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_text(text, filename)
