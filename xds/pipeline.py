"""Facade used by the control plane: load -> model -> graph validation -> translate.

docs, diags = load_paths(["config/"])
result = compile_documents(docs)          # MeshConfig + diagnostics (errors refuse the config)
snapshots = SnapshotBuilder().build(result.config, proxies, changed_at, version)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from xds.diagnostics import Diagnostic, Location, Severity
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.model.jwks_fetch import resolve_jwks
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


Inputs = ResolvedInputs | Callable[[MeshConfig], ResolvedInputs] | None


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


def compile_documents(docs: list[RawDocument], strict: bool = False, inputs: Inputs = None) -> CompileResult:
    """Model + graph validation. config is None when any error was found (the config is refused). strict:
    references istiod accepts with a warning (missing host/subset/port, a younger duplicate) are refused.
    inputs: the JWKS/credentials the config names, resolved with its version (or a function resolving them
    from the model: xds/controlplane/inputs.py); None: JWKS are fetched/read now (mecha validate)."""
    model = build_mesh(docs)
    if inputs is None:
        inputs = ResolvedInputs.of(resolve_jwks(model.config, EMPTY_INPUTS), [])
    elif not isinstance(inputs, ResolvedInputs):
        inputs = inputs(model.config)
    config = replace(model.config, inputs=inputs)
    diags = list(model.diagnostics)
    diags += promote_strict(validate(config)) if strict else validate(config)
    diags += check_security(config)  # security kinds + Gateway
    diags += check_resiliencies(config.resiliencies)  # Dapr policies Envoy cannot express
    ok = not any(d.severity is Severity.ERROR for d in diags)
    return CompileResult(config if ok else None, diags, model.skipped)


def load_paths(paths: list[str | Path]) -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_paths(paths)


def load_text(text: str, filename: str = "<inline>") -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_text(text, filename)
