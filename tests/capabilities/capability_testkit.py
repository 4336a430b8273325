"""Helpers for the capability service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest


def server_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_server(name: str, host: str, port: int) -> None:
    """Skip when a backing server does not answer; under CI=true that is a failure."""
    if server_answers(host, port):
        return
    reason = f"{name} is not answering on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def component(name: str, ctype: str, **metadata: str) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {
            "type": ctype,
            "version": "v1",
            "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
        },
    }
