"""Graph validation: a networkx reference graph plus semantic checks -> Diagnostics."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.validate.checks import is_catch_all, is_catch_all_match, validate
    from xds.validate.graph import build_graph

# Loaded on first use (PEP 562): `xds.validate.strict` is read by the CLI, which must not import networkx.
_HOMES = {
    "is_catch_all": "xds.validate.checks",
    "is_catch_all_match": "xds.validate.checks",
    "validate": "xds.validate.checks",
    "build_graph": "xds.validate.graph",
}

__all__ = ["build_graph", "is_catch_all", "is_catch_all_match", "validate"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
