"""Bootstraps Envoy accepts, node metadata the control plane accepts, and one config for every topology."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from deploy_helpers import COMPOSE

from xds import pipeline
from xds.demo.config import default_layout, demo_documents
from xds.proxy import ProxyIdentity, ProxyMode
from xds.testing.envoy import envoy_binary

BOOTSTRAPS = sorted((COMPOSE / "bootstrap").rglob("*.yaml"))


def _identity(path: Path) -> ProxyIdentity:
    node = yaml.safe_load(path.read_text())["node"]
    return ProxyIdentity.from_node(node["id"], node["metadata"])


def test_every_bootstrap_is_valid_for_envoy() -> None:
    # 6 sidecars (and their replicas-variant copies), the node, the ingress gateway of each compose file
    assert len(BOOTSTRAPS) == 16
    assert {"sidecar.yaml", "node.yaml"} <= {p.name for p in BOOTSTRAPS if p.parent.name == "gateway"}
    for path in BOOTSTRAPS:
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{path}: {result.stdout[-800:]}{result.stderr[-800:]}"


def test_sidecar_bootstraps_carry_their_pod(topology: ModuleType) -> None:
    for w in topology.WORKLOAD_LIST:
        path = COMPOSE / "bootstrap" / "sidecar" / f"{w.name}.yaml"
        proxy = _identity(path)
        assert proxy.id == w.name and proxy.mode is ProxyMode.SIDECAR
        # every replica shares this bootstrap: its agent sets <name>.<host name> and the replica's address,
        # registered in the workload's WorkloadGroup (issue #15)
        assert proxy.address == "0.0.0.0" and proxy.workload_group == w.name
        assert [(a.name, a.app_port, a.inbound_port) for a in proxy.apps] == [
            (w.service, topology.SIDECAR.app, topology.SIDECAR.inbound)
        ]
        assert proxy.label_map == {"app": w.service, "version": w.version}
        # xDS and SDS only through the agent's sockets (issue #11): no network address, no credential
        clusters = {c["name"]: c for c in yaml.safe_load(path.read_text())["static_resources"]["clusters"]}
        for name, socket in (("mecha_xds", "xds.sock"), ("sds-grpc", "sds.sock")):
            endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            assert endpoint["address"] == {"pipe": {"path": f"/var/lib/mecha-agent/sockets/{socket}"}}


def test_node_bootstrap_fronts_every_app_on_mecha_up_ports(topology: ModuleType) -> None:
    proxy = _identity(COMPOSE / "bootstrap" / "node" / "node-a.yaml")
    assert proxy.mode is ProxyMode.NODE
    up = default_layout("node").proxies[0]
    assert proxy.outbound_port == up.outbound_port
    by_name = {(a.name, a.label_map["version"]): (a.app_port, a.inbound_port) for a in proxy.apps}
    for w in up.workloads:  # the bookinfo part is exactly `mecha up --mode node`'s layout
        assert by_name[(w.service, w.version)] == (w.app_port, w.inbound_port)
    assert len(proxy.apps) == len(topology.WORKLOAD_LIST)


@pytest.mark.parametrize("endpoints", ["local", "compose-sidecar"])
def test_config_folder_compiles_with_each_topologys_endpoints(endpoints: str) -> None:
    docs, load_diags = pipeline.load_paths([str(COMPOSE / "config"), str(COMPOSE / "endpoints" / endpoints)])
    result = pipeline.compile_documents(docs)
    errors = [d for d in [*load_diags, *result.diagnostics] if str(d.severity) == "error"]
    assert errors == []
    kinds = sorted(d.kind for d in docs)
    # compose sidecar replicas register themselves in their WorkloadGroup (issue #15)
    endpoint_kind = "WorkloadGroup" if endpoints == "compose-sidecar" else "WorkloadEntry"
    assert kinds.count(endpoint_kind) == 6 and kinds.count("Component") == 4


def test_a_bad_edit_of_the_shared_config_is_reported_with_file_and_field(tmp_path: Path) -> None:
    """Weights that do not sum to 100 are refused (an unknown subset no longer is: istiod accepts it)."""
    good = (COMPOSE / "config" / "mesh.yaml").read_text()
    text = good.replace("subset: v1}, weight: 80}", "subset: v1}, weight: 70}", 1)
    assert text != good, "the shared config no longer has the 80/20 split this test edits"
    (tmp_path / "mesh.yaml").write_text(text)
    docs, _ = pipeline.load_paths([str(tmp_path), str(COMPOSE / "endpoints" / "local")])
    result = pipeline.compile_documents(docs)
    errors = [d for d in result.diagnostics if str(d.severity) == "error"]
    assert [e.code for e in errors] == ["bad-weight"] and "90" in errors[0].message, errors
    assert "mesh.yaml" in str(errors[0].location.file) and errors[0].location.name == "reviews"
    assert result.config is None  # refused as a whole: the last good config keeps serving


def test_local_endpoints_are_mecha_ups_endpoints() -> None:
    """Node-mode compose and `mecha up` share one set of endpoints (127.0.0.1 + inbound ports)."""
    local = list(yaml.safe_load_all((COMPOSE / "endpoints" / "local" / "workloads.yaml").read_text()))
    ours = {d["metadata"]["name"]: d["spec"] for d in local}
    theirs = [d for d in demo_documents(default_layout("node")) if d["kind"] == "WorkloadEntry"]
    assert theirs, "the demo config has no WorkloadEntry"
    for doc in theirs:
        assert ours[doc["metadata"]["name"]] == doc["spec"]
    # `mecha up`'s sidecars register themselves at the same 127.0.0.1:<inbound port> (issue #15)
    groups = [d for d in demo_documents(default_layout("sidecar")) if d["kind"] == "WorkloadGroup"]
    assert groups and {d["metadata"]["name"] for d in groups} <= set(ours)


def test_bookinfo_routing_is_the_demos_routing() -> None:
    shared = {
        (d["kind"], d["metadata"]["name"]): d["spec"]
        for d in yaml.safe_load_all((COMPOSE / "config" / "mesh.yaml").read_text())
    }
    for doc in demo_documents(default_layout()):
        if doc["kind"] in ("VirtualService", "DestinationRule", "ServiceEntry"):
            assert shared[(doc["kind"], doc["metadata"]["name"])] == doc["spec"], doc["metadata"]["name"]


def test_gateway_bootstraps_select_the_shared_gateway(topology: ModuleType) -> None:
    """The ingress gateway's labels match Gateway bookinfo-gateway's selector in the shared config."""
    docs = list(yaml.safe_load_all((COMPOSE / "config" / "mesh.yaml").read_text()))
    (gateway,) = [d for d in docs if d["kind"] == "Gateway"]
    for name in ("sidecar", "node"):
        proxy = _identity(COMPOSE / "bootstrap" / "gateway" / f"{name}.yaml")
        assert proxy.mode is ProxyMode.GATEWAY and proxy.id == topology.GATEWAY_ID
        assert all(proxy.label_map.get(k) == v for k, v in gateway["spec"]["selector"].items())
        assert dict(proxy.gateway_ports) == {80: topology.GATEWAY_PORT}
