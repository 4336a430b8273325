"""Fixtures for the capability service tests: an in-process sidecar on aiohttp's test client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from capability_testkit import component

if os.environ.get("MECHA_EVENT_LOOP", "").strip().lower() == "uvloop":
    # Opt-in: run every async test here on uvloop, the loop `python -m capabilities` uses when installed (the
    # in-process gRPC sidecars of tests/capabilities/grpc always run on the service's loop).
    import uvloop

    def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
        return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def docs_component() -> Callable[..., dict[str, Any]]:
    return component


@pytest.fixture
async def make_sidecar() -> AsyncIterator[Callable[..., Any]]:
    """make_sidecar(docs, **settings) -> (client, runtime); resources applied before the client starts."""
    from aiohttp.test_utils import TestClient, TestServer

    from capabilities.api.http.app import build_app
    from capabilities.config.documents import parse_documents
    from capabilities.config.settings import Settings
    from capabilities.runtime import Runtime

    started: list[tuple[Any, Any]] = []

    async def start(docs: list[dict[str, Any]] | None = None, *, load: bool = True, **settings: Any) -> Any:
        settings.setdefault("app_id", "test-app")
        runtime = Runtime(Settings(**settings))
        if load:
            await runtime.apply_resources(
                parse_documents([(d, "test.yaml") for d in docs or []], runtime.app_id)
            )
        client = TestClient(TestServer(build_app(runtime)))
        await client.start_server()
        started.append((client, runtime))
        return client, runtime

    yield start
    for client, runtime in reversed(started):
        await client.close()
        await runtime.stop()
