"""Dapr resource YAML (Component, Subscription, Resiliency, Configuration): parsing and loading.

- documents.py: YAML text/folder -> ResourceSet of raw documents, Component docs -> RawComponent
- secrets.py: secretKeyRef resolution through secret stores -> ComponentSpec
- controlplane.py: long-poll of the control plane's /api/v1/dapr endpoint
"""

from __future__ import annotations

from capabilities.config.documents import ConfigError, RawComponent, ResourceSet, load_folder, parse_documents
from capabilities.daprspec.durations import parse_duration

__all__ = ["ConfigError", "RawComponent", "ResourceSet", "load_folder", "parse_documents", "parse_duration"]
