"""Bindings conformance: one suite, parameterised by tests/conformance/config/bindings.yaml."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conformance_helpers import load_rows, need_server

ROWS: list[dict[str, Any]] = load_rows("bindings")


@pytest.fixture(params=ROWS, ids=[row["name"] for row in ROWS])
def row(request: pytest.FixtureRequest) -> dict[str, Any]:
    need_server(request.param.get("server"))
    return request.param


@pytest.fixture
def unique() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"
