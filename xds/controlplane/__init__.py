"""The running control plane: config store, sources (API, watched folders), push pipeline, HTTP API."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT, Settings
    from xds.controlplane.store import Change, ConfigStore, Plan

# Loaded on first use (PEP 562): the CLI imports light submodules (settings, report) and must not pay for
# the store and its backends on every `mecha --help`.
_HOMES = {
    "DEFAULT_API_PORT": "xds.controlplane.settings",
    "DEFAULT_XDS_PORT": "xds.controlplane.settings",
    "Settings": "xds.controlplane.settings",
    "Change": "xds.controlplane.store",
    "ConfigStore": "xds.controlplane.store",
    "Plan": "xds.controlplane.store",
}

__all__ = ["DEFAULT_API_PORT", "DEFAULT_XDS_PORT", "Change", "ConfigStore", "Plan", "Settings"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
