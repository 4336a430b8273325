"""Bindings conformance: one suite, parameterised by tests/conformance/config/bindings.yaml."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "config" / "bindings.yaml"
ROWS: list[dict[str, Any]] = yaml.safe_load(CONFIG.read_text())["components"]


def server_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_server(server: dict[str, Any] | None) -> None:
    """Skip when the backing server does not answer; under CI=true that is a failure instead."""
    if not server or server_up(server["host"], int(server["port"])):
        return
    reason = f"{server['name']} is not answering on {server['host']}:{server['port']}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=ROWS, ids=[row["name"] for row in ROWS])
def row(request: pytest.FixtureRequest) -> dict[str, Any]:
    require_server(request.param.get("server"))
    return request.param


@pytest.fixture
def unique() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"
