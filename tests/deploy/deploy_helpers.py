"""Helpers for the deployment tests: compose/ modules, tool and backing-server checks (skip locally,
fail under CI=true). A module of its own: `from conftest import` is ambiguous across test folders."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def require_tool(name: str, install_hint: str) -> str:
    """Path of a command-line tool; skip (or fail under CI=true) when it is not installed."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({install_hint})"
    if _ci():
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


def backend_available(host: str, port: int, name: str) -> None:
    """Skip (or fail under CI=true) when a backing server does not answer; the reason names it."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not answering on {host}:{port}"
        if _ci():
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


def compose_module(name: str) -> ModuleType:
    """Import a module of compose/ (not a package: it lives beside the compose files)."""
    if str(COMPOSE) not in sys.path:
        sys.path.insert(0, str(COMPOSE))
    return __import__(name)
