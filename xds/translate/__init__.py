"""Pure translation: MeshConfig + ProxyIdentity -> serialized Envoy resources -> Snapshots.

Names load lazily (PEP 562): every xds.translate.<module> import runs this file first, and an eager import of
the builder here would load the whole translator for a caller that needs one module (pack, decode)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.translate.builder import SnapshotBuilder
    from xds.translate.decode import resource_to_dict

_HOMES = {"SnapshotBuilder": "xds.translate.builder", "resource_to_dict": "xds.translate.decode"}

__all__ = ["SnapshotBuilder", "resource_to_dict"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
