"""Fixtures for the config pipeline tests; `pytest tests/xds/config --update-golden` rewrites golden files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

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


def sidecar(proxy_id: str = "productpage-v1", namespace: str = "default") -> ProxyIdentity:
    return ProxyIdentity.from_node(
        proxy_id,
        {
            "mecha": {
                "mode": "sidecar",
                "namespace": namespace,
                "outbound_port": 15001,
                "dapr_http_port": 3500,
                "dapr_grpc_port": 50001,
                "capabilities_http": "127.0.0.1:3501",
                "capabilities_grpc": "127.0.0.1:50002",
                "labels": {"app": "productpage", "version": "v1"},
                "apps": [{"name": "productpage", "app_port": 9080, "inbound_port": 15006}],
            }
        },
    )


@pytest.fixture
def proxy() -> ProxyIdentity:
    return sidecar()
