"""The one error a Dapr document that cannot be read raises."""

from __future__ import annotations


class SpecError(ValueError):
    """A Dapr document field that cannot be read: names the document (`source`, when known), the field path
    and the reason. The capability service refuses the document; the control plane reports it."""

    def __init__(self, field: str, reason: str, source: str = "") -> None:
        self.field = field
        self.reason = reason
        self.source = source
        where = f"{source}: {field}" if source else field
        super().__init__(f"{where}: {reason}")

    def within(self, source: str) -> SpecError:
        """The same problem, named in the document `source` (no traceback: it may be kept in a cache)."""
        return SpecError(self.field, self.reason, source)
