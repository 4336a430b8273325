"""`mecha up`'s sidecar demo registers through WorkloadGroups (issue #15): when the stack says ready, every
sidecar has its own registered WorkloadEntry (no static one) and requests flow through them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from e2e_mesh import Mesh, demo_mesh

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registered_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path_factory.mktemp("registration"), False) as mesh:
        yield mesh


@pytest.mark.asyncio(loop_scope="module")
async def test_every_sidecar_is_registered_when_the_stack_is_ready(registered_mesh: Mesh) -> None:
    data = await registered_mesh.api_get("/api/v1/workloads")
    by_proxy = {r["annotations"]["mecha.io/proxyId"]: r for r in data["workloads"]}
    sidecars = {p.id for p in registered_mesh.layout.proxies}
    assert set(by_proxy) == sidecars and data["refused"] == {}, data
    for proxy_id, row in by_proxy.items():
        assert row["address"] == "127.0.0.1"
        assert row["annotations"]["istio.io/autoRegistrationGroup"] == proxy_id  # its own group
    # no static entry: the registered ones are the only endpoints, and they carry the traffic
    config = (registered_mesh.stack.config_dir / "demo.yaml").read_text()
    assert "kind: WorkloadEntry" not in config and "kind: WorkloadGroup" in config
    versions = await registered_mesh.versions(20)  # productpage's Envoy -> the registered reviews entries
    assert set(versions) <= {"v1", "v2"} and sum(versions.values()) == 20, versions
