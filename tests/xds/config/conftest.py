"""Fixtures for the config pipeline tests; `pytest tests/xds/config --update-golden` rewrites golden files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from cfg_helpers import sidecar

from xds.proxy import ProxyIdentity

HERE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite tests/xds/config/golden outputs"
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def require_server(host: str, port: int, name: str) -> None:
    """Skip (or fail when CI=true) when a backing server does not answer."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return
    except OSError as exc:
        reason = f"{name} at {host}:{port} does not answer ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def proxy() -> ProxyIdentity:
    return sidecar()
