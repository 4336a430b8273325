"""Table-driven analysis: each document's fields are walked with the kind's field table (xds.model.specs, the
same tables that check config), so every kind registered there — including ones other modules add — is
analysed without code here knowing about it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xds.analyze.coexist import coexistence
from xds.diagnostics import Diagnostic, Location, Severity
from xds.gatewayapi.schema import SPECS as GATEWAY_API_SPECS
from xds.model.schema import ListOf, MapOf, Obj, Spec, camelize
from xds.model.specs import SPEC_BY_KIND
from xds.pipeline import compile_documents, load_paths
from xds.sources.kinds import Family, classify, dropped_kind_reason, unknown_kind_problem
from xds.sources.loader import RawDocument

HONOURED = "honoured"
DIFFERS = "differs"
UNSUPPORTED = "unsupported"
UNKNOWN = "unknown"  # not a field of the kind at all (typo, newer Istio): refused by `mecha apply`
DROPPING = (UNSUPPORTED, UNKNOWN)
DROPPED_KIND = "dropped-kind"  # diagnostic code of a document whose kind Mecha does not honour
_LABEL = {
    HONOURED: "honoured",
    DIFFERS: "honoured differently",
    UNSUPPORTED: "not supported",
    UNKNOWN: "unknown field",
}


@dataclass(frozen=True)
class FieldReport:
    file: str
    document: int
    kind: str
    namespace: str
    name: str
    path: str
    status: str
    note: str = ""


@dataclass(frozen=True)
class SkippedKind:
    api_version: str
    kind: str
    count: int
    files: tuple[str, ...]


@dataclass
class AnalyzeReport:
    fields: list[FieldReport] = field(default_factory=list)
    skipped: list[SkippedKind] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    resources: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def dropped(self) -> list[FieldReport]:
        return [f for f in self.fields if f.status in DROPPING]

    @property
    def would_drop(self) -> bool:
        """True when applying this config would lose something: an ignored field, a refused document, or a
        document of a kind whose effect Mecha does not reproduce (EnvoyFilter, Telemetry, WasmPlugin)."""
        return bool(self.dropped or self.errors or self.dropped_kinds)

    @property
    def dropped_kinds(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.code == DROPPED_KIND]

    def counts(self) -> Counter[str]:
        return Counter(f.status for f in self.fields)


def _walk(value: Any, spec: Spec, path: str, out: list[tuple[str, str, str]]) -> None:
    """(path, status, note) for every field present in value, per the declared table."""
    if isinstance(spec, ListOf) and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, spec.item, f"{path}[{i}]", out)
    elif isinstance(spec, MapOf) and isinstance(value, dict):
        for k, v in value.items():
            _walk(v, spec.value, f"{path}.{k}", out)
    elif isinstance(spec, Obj) and isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            declared = spec.fields.get(key) if isinstance(key, str) else None
            if declared is None:
                if not spec.lenient:
                    out.append((where, UNKNOWN, "not a field of this kind: the document is refused"))
                continue
            if item is None:
                continue
            out.append((where, declared.status, declared.why))
            if declared.honoured:
                _walk(item, declared.spec, where, out)


def analyze_documents(
    docs: Iterable[RawDocument], load_diagnostics: list[Diagnostic] | None = None, strict: bool = False
) -> AnalyzeReport:
    docs = list(docs)
    report = AnalyzeReport(diagnostics=list(load_diagnostics or []))
    skipped: dict[tuple[str, str], list[str]] = {}
    for doc in docs:
        info, bad_version = classify(doc.api_version, doc.kind)
        if info is None and bad_version is None:
            if unknown_kind_problem(doc.api_version, doc.kind) is not None:
                continue  # a typo or a foreign group: reported by compile as an error, not "skipped"
            if dropped_kind_reason(doc.api_version, doc.kind) is None:  # dropped ones: a diagnostic
                skipped.setdefault((doc.api_version, doc.kind), []).append(doc.location.file)
            continue
        if info is None:
            continue  # reported by compile as an error
        report.resources += 1
        loc = doc.location
        spec = doc.body.get("spec")
        gateway_api = info.family is Family.GATEWAY_API  # its own tables: its Gateway is not Istio's
        table = GATEWAY_API_SPECS[doc.kind] if gateway_api else SPEC_BY_KIND.get(doc.kind)
        rows: list[tuple[str, str, str]] = []
        if table is None:
            if info.family is Family.DAPR:
                rows.append(("spec", HONOURED, "read by the capability service as a whole"))
            else:
                rows.append(("spec", UNSUPPORTED, f"{doc.kind} is accepted but not translated yet"))
        elif spec is not None:
            if info.family is not Family.DAPR and not gateway_api:
                spec = camelize(spec, table)  # proto field names (source_labels) are accepted as istiod does
            _walk(spec, table, "spec", rows)
        for key in doc.body:
            if key not in ("apiVersion", "kind", "metadata", "spec", "status", "scopes", "auth"):
                rows.append((str(key), UNKNOWN, "not a top-level field: the document is refused"))
        report.fields += [
            FieldReport(loc.file, loc.document, doc.kind, loc.namespace, loc.name, p, s, n)
            for p, s, n in rows
        ]
    result = compile_documents(docs, strict=strict)
    report.diagnostics += [d for d in result.diagnostics if d.code not in ("skipped", "unsupported")]
    if result.config is not None:  # a refused config has no routes to compare
        report.diagnostics += coexistence(docs, result.config)
    report.skipped = [
        SkippedKind(api, kind, len(files), tuple(sorted(set(files))))
        for (api, kind), files in sorted(skipped.items())
    ]
    return report


def analyze_paths(paths: Iterable[str | Path], strict: bool = False) -> AnalyzeReport:
    docs, diags = load_paths(list(paths))
    return analyze_documents(docs, diags, strict)


def render_text(report: AnalyzeReport, quiet: bool = False) -> str:
    lines: list[str] = []
    current: tuple[str, int] | None = None
    for f in report.fields:
        if quiet and f.status == HONOURED:
            continue
        if (f.file, f.document) != current:
            current = (f.file, f.document)
            lines.append(f"{Location(f.file, f.document, f.kind, f.namespace, f.name)}")
        note = f"  ({f.note})" if f.note and f.status != HONOURED else ""
        lines.append(f"  {_LABEL[f.status]:<21} {f.path}{note}")
    if report.skipped:
        lines.append("skipped kinds (not Istio/Dapr config Mecha reads):")
        for s in report.skipped:
            lines.append(f"  {s.api_version} {s.kind} x{s.count}  ({', '.join(s.files)})")
    problems = [d for d in report.diagnostics if d.severity is not Severity.INFO]
    if problems:
        lines.append("diagnostics:")
        lines += [f"  {d}" for d in problems]
    c = report.counts()
    lines.append(
        f"summary: {report.resources} resources, {c[HONOURED]} fields honoured, {c[DIFFERS]} honoured "
        f"differently, {c[UNSUPPORTED]} not supported, {c[UNKNOWN]} unknown, "
        f"{sum(s.count for s in report.skipped)} documents of skipped kinds, {len(report.errors)} errors"
    )
    lines.append(
        "result: something would be dropped or refused" if report.would_drop else "result: nothing is dropped"
    )
    return "\n".join(lines)


def render_json(report: AnalyzeReport) -> str:
    return json.dumps(
        {
            "resources": report.resources,
            "fields": [asdict(f) for f in report.fields],
            "skipped": [asdict(s) for s in report.skipped],
            "diagnostics": [d.to_dict() for d in report.diagnostics],
            "summary": dict(report.counts()),
            "would_drop": report.would_drop,
        },
        indent=2,
    )
