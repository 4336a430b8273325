"""Helpers for the security tests: compile YAML text, build snapshots, decode resources."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from xds import types
from xds.cache.snapshot import Snapshot
from xds.model.mesh import MeshConfig
from xds.pipeline import CompileResult, compile_documents, load_text
from xds.translate.decode import resource_to_dict


def backend_available(host: str, port: int, name: str) -> None:
    """Skip (or fail under CI=true) when a backing server does not answer (none is needed here today)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not answering on {host}:{port}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


def compile_text(text: str, filename: str = "sec.yaml") -> CompileResult:
    docs, diags = load_text(text, filename)
    assert not diags, [str(d) for d in diags]
    return compile_documents(docs)


def config_of(text: str) -> MeshConfig:
    result = compile_text(text)
    assert result.ok and result.config is not None, [str(d) for d in result.errors]
    return result.config


def decoded(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    type_url = types.FROM_SHORT[short]
    return {name: resource_to_dict(type_url, r.body) for name, r in snap.of(type_url).items()}
