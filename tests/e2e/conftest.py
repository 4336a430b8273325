"""End-to-end fixtures: a real control plane (subprocess `mecha serve`), the demo apps and real Envoys.

One mesh per module and xDS flavour (SotW, delta): starting it costs a few seconds, so tests share it and
restore any config they change.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from e2e_mesh import Mesh, demo_mesh


def backend_available(host: str, port: int, name: str) -> None:
    """Skip (or fail under CI=true) when a backing server does not answer; the reason names it."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not answering on {host}:{port}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)


@pytest.fixture(scope="module", params=["sotw", "delta"])
def xds_flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(xds_flavour: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    state = tmp_path_factory.mktemp(f"mesh-{xds_flavour}")
    async with demo_mesh(state, delta=xds_flavour == "delta") as found:
        yield found
