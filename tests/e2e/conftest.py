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
from e2e_mesh import Mesh

from xds.demo.config import make_layout
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port


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


class _PortPool:
    """Distinct free ports for one layout (see xds.testing.envoy.free_port)."""

    def __call__(self, _role: str = "", _index: int = 0) -> int:
        return free_port()


@pytest.fixture(scope="module", params=["sotw", "delta"])
def xds_flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(xds_flavour: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    ports = _PortPool()
    layout = make_layout("sidecar", ports)
    state = tmp_path_factory.mktemp(f"mesh-{xds_flavour}")
    stack = Stack(
        StackOptions(
            layout=layout,
            state_dir=state,
            api_port=ports(),
            xds_port=ports(),
            delta=xds_flavour == "delta",
            watch_interval=0.2,
            with_capabilities=False,
        )
    )
    try:
        await stack.start(60)
    except BaseException:
        await stack.stop()
        raise
    mesh = Mesh(stack, layout, xds_flavour == "delta")
    try:
        yield mesh
    finally:
        await mesh.close()
        await stack.stop()
        assert all(c.exited is not None for c in stack.sup.children), "a child survived teardown"
