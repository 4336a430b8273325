"""Kubernetes manifests: schema-valid (kubernetes-validate, offline), and consistent with the mesh config."""

from __future__ import annotations

import ipaddress
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE

from xds.proxy import ProxyIdentity

K8S = COMPOSE / "kubernetes"
FILES = ["control-plane.yaml", "backends.yaml", "apps.yaml", "gateway.yaml"]


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _find(kind: str, name: str) -> dict[str, Any]:
    for file in FILES:
        for doc in _docs(file):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name}")


@pytest.mark.parametrize("name", FILES)
def test_manifests_match_the_kubernetes_schema(name: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extra)")
    docs = _docs(name)
    assert docs
    for doc in docs:
        kv.validate(doc, "1.30.0", strict=True)  # raises ValidationError naming the bad field


def test_the_schema_check_can_fail() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extra)")
    bad = _find("Deployment", "reviews-v1")
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyTypo"] = "Always"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.30.0", strict=True)


def test_each_workload_pod_runs_app_envoy_and_capability_service(topology: ModuleType) -> None:
    for w in topology.WORKLOAD_LIST:
        pod = _find("Deployment", w.name)["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["containers"]] == ["app", "envoy", "capabilities"]
        assert pod["containers"][1]["image"].startswith("envoyproxy/envoy:v")
        configmap = _find("ConfigMap", f"{w.name}-bootstrap")
        assert pod["volumes"] == [{"name": "bootstrap", "configMap": {"name": f"{w.name}-bootstrap"}}]
        assert configmap["data"]["envoy.yaml"] == topology.kubernetes_bootstrap(w)
        node = yaml.safe_load(configmap["data"]["envoy.yaml"])["node"]
        assert ProxyIdentity.from_node(node["id"], node["metadata"]).apps[0].name == w.service


def test_workload_entries_point_at_the_services_fixed_cluster_ips(topology: ModuleType) -> None:
    cidr = ipaddress.ip_network(topology.K8S_SERVICE_CIDR)
    data = _find("ConfigMap", "mecha-config")["data"]
    entries = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(data["workloads.yaml"])}
    for w in topology.WORKLOAD_LIST:
        service = _find("Service", w.name)["spec"]
        assert ipaddress.ip_address(service["clusterIP"]) in cidr
        assert entries[w.name]["address"] == service["clusterIP"]
        assert entries[w.name]["ports"]["http"] in [p["port"] for p in service["ports"]]
        assert service["selector"] == w.labels


def test_control_plane_serves_the_shared_config_folder() -> None:
    data = _find("ConfigMap", "mecha-config")["data"]
    for path in sorted((COMPOSE / "config").glob("*.yaml")):
        assert data[path.name] == path.read_text(), f"{path.name} differs from compose/config"
    container = _find("Deployment", "mecha-control-plane")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "/etc/mecha/config/..data" in container["command"]
