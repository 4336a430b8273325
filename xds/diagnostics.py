"""One error/warning type shared by every stage, so users always see file, document, field and reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a config document came from. document is the 0-based index in a multi-document file; item the
    0-based index in that document's `items` when it is a `kind: List` (kubectl get -o yaml)."""

    file: str = "<inline>"
    document: int = 0
    kind: str = ""
    namespace: str = ""
    name: str = ""
    item: int | None = None

    def __str__(self) -> str:
        who = f"{self.kind} {self.namespace}/{self.name}" if self.kind else "document"
        item = f" item {self.item}" if self.item is not None else ""
        return f"{self.file} doc {self.document}{item} ({who})"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    location: Location
    field: str
    message: str
    severity: Severity = Severity.ERROR
    code: str = ""  # short machine-readable reason, e.g. "unknown-subset"

    def __str__(self) -> str:
        fld = f" field {self.field}" if self.field else ""
        return f"{self.severity}: {self.location}{fld}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "severity": str(self.severity),
            "file": loc.file,
            "document": loc.document,
            "kind": loc.kind,
            "namespace": loc.namespace,
            "name": loc.name,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        } | ({"item": loc.item} if loc.item is not None else {})


@dataclass
class Diagnostics:
    """Collects diagnostics across a stage; a stage never raises half-way."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, location: Location, fld: str, message: str, code: str = "") -> None:
        self.items.append(Diagnostic(location, fld, message, Severity.ERROR, code))

    def warning(self, location: Location, fld: str, message: str, code: str = "") -> None:
        self.items.append(Diagnostic(location, fld, message, Severity.WARNING, code))

    def extend(self, other: Diagnostics | list[Diagnostic]) -> None:
        self.items.extend(other.items if isinstance(other, Diagnostics) else other)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors
