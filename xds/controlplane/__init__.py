"""The running control plane: config store, sources (API, watched folders), push pipeline, HTTP API."""

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT, Settings
from xds.controlplane.store import Change, ConfigStore, Plan

__all__ = ["DEFAULT_API_PORT", "DEFAULT_XDS_PORT", "Change", "ConfigStore", "Plan", "Settings"]
