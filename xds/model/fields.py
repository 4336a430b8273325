"""The record of which fields Mecha honours per kind (for `mecha analyze`), derived from the schema tables."""

from __future__ import annotations

from xds.model.schema import honoured_paths
from xds.model.specs import SPEC_BY_KIND


def honoured_fields(kind: str) -> dict[str, bool]:
    """Field path (`spec.http[].route[].weight`) -> True if translated, False if accepted but ignored.

    Unknown kinds give {}; paths under an ignored field are not listed (the whole subtree is ignored).
    """
    spec = SPEC_BY_KIND.get(kind)
    return dict(honoured_paths(spec, "spec")) if spec is not None else {}
