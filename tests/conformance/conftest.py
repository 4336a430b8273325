"""Fixtures shared by the capability conformance suites (state, secretstores, configuration, lock...)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def sidecar_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start an in-process capability service (aiohttp test client) for a list of component docs."""
    from aiohttp.test_utils import TestClient, TestServer

    from capabilities.api.http.app import build_app
    from capabilities.config.documents import parse_documents
    from capabilities.config.settings import Settings
    from capabilities.runtime import Runtime

    started: list[tuple[TestClient, Runtime]] = []

    async def start(
        docs: list[dict[str, Any]], *, app_id: str = "conf-app", **settings: Any
    ) -> tuple[Any, Any]:
        runtime = Runtime(Settings(app_id=app_id, **settings))
        await runtime.apply_resources(parse_documents([(d, "test") for d in docs], app_id))
        assert not runtime.init_errors, runtime.init_errors
        client = TestClient(TestServer(build_app(runtime)))
        await client.start_server()
        started.append((client, runtime))
        return client, runtime

    yield start
    for client, runtime in reversed(started):
        await client.close()
        await runtime.stop()
