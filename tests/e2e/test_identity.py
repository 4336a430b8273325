"""Workload identity through real Envoys (issue #11): every Envoy reaches the control plane only through its
`mecha agent` (credential, key generated locally, SDS + ADS over Unix sockets); mTLS between the proxies
works with those keys, and what an attacker on the same host can send to the xDS port gets nothing."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import yaml
from e2e_mesh import Mesh, demo_mesh

from xds import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "xds" / "identity"))
from identity_helpers import ads_request

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    env = {"MECHA_MTLS": "1", "MECHA_CERT_TTL": "8"}
    async with demo_mesh(tmp_path_factory.mktemp("agents"), False, env, with_agents=True) as mesh:
        yield mesh


async def test_mtls_between_agent_backed_proxies_carries_the_credential_identity(
    agent_mesh: Mesh, tmp_path: Path
) -> None:
    (tmp_path / "strict.yaml").write_text(STRICT)
    rc, out = await agent_mesh.cli("apply", "-f", str(tmp_path / "strict.yaml"))
    assert rc == 0, out
    status, body = await agent_mesh.call("reviews", "/reviews")
    assert status == 200, body
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in headers.get(
        "x-forwarded-client-cert", ""
    )
    counts = await agent_mesh.versions(10, end_user="jason")  # productpage -> reviews v2 -> ratings
    assert counts == {"v2": 10}


async def test_bootstraps_hold_no_credential_and_a_copied_node_block_gets_nothing(agent_mesh: Mesh) -> None:
    state = agent_mesh.stack.o.state_dir
    bootstrap = (state / "bootstrap" / "reviews-v1.agent.yaml").read_text()
    assert "xds.sock" in bootstrap and "Bearer" not in bootstrap and "PRIVATE KEY" not in bootstrap
    node = yaml.safe_load(bootstrap)["node"]
    root = state / "ca" / "root-cert.pem"
    port = agent_mesh.stack.o.xds_port
    for type_url, names in ((types.SECRET, ["default"]), (types.CLUSTER, [])):
        out = await ads_request(
            port, root, node["id"], node["metadata"]["mecha"], type_url=type_url, names=names
        )
        assert out.responses == [] and out.code is grpc.StatusCode.UNAUTHENTICATED, out
    plain = await ads_request(port, None, node["id"], node["metadata"]["mecha"], names=["default"])
    assert plain.responses == [] and plain.code is grpc.StatusCode.UNAVAILABLE
    credential = state / "agents" / "reviews-v1" / "credential.jwt"
    assert (
        credential.stat().st_mode & 0o077 == 0
        and (state / "agents" / "reviews-v1").stat().st_mode & 0o077 == 0
    )
