"""Kubernetes manifests: schema-valid (kubernetes-validate, offline), and consistent with the mesh config;
workload identity as compose does it (issue #11): no plaintext xDS, Envoys reach only their agent's sockets,
credentials (Secrets made by kubernetes/issue-credentials.sh) mounted into the agent's container alone."""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE

from xds.cli.main import main as mecha
from xds.identity.authenticator import overclaim
from xds.identity.credential import CredentialIssuer, CredentialVerifier
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
        assert pod["volumes"][0] == {"name": "bootstrap", "configMap": {"name": f"{w.name}-bootstrap"}}
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


# ---- workload identity (issue #11) ---------------------------------------------------------------------

AGENT_DIR = "/var/lib/mecha-agent"  # compose/agents.py: the socket volume, in the agent's and Envoy's
SOCKET_DIR = f"{AGENT_DIR}/sockets"
ENVOY_GID = 101


def _pods() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, its pod spec) of every Deployment running an Envoy."""
    out = []
    for file in FILES:
        for doc in _docs(file):
            pod = doc.get("spec", {}).get("template", {}).get("spec") if doc["kind"] == "Deployment" else None
            if pod and any(c["name"] == "envoy" for c in pod["containers"]):
                out.append((doc, pod))
    return out


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == name)


def _mounting(pod: dict[str, Any], volume: str) -> list[str]:
    return [
        c["name"] for c in pod["containers"] if any(m["name"] == volume for m in c.get("volumeMounts", []))
    ]


def _bootstrap(deployment: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    configmap = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "bootstrap")
    doc = _find("ConfigMap", configmap)
    assert doc["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    return dict(yaml.safe_load(doc["data"]["envoy.yaml"]))


def _is_agent(container: dict[str, Any]) -> bool:
    argv = container["command"]
    return "--agent-credential" in argv or argv[:2] == ["mecha", "agent"]


def test_pods_run_envoy_beside_an_agent() -> None:
    pods = _pods()
    assert len(pods) == 7  # six workloads and the ingress gateway
    for deployment, pod in pods:
        agents = [c["name"] for c in pod["containers"] if _is_agent(c)]
        assert agents == (
            ["agent"] if deployment["metadata"]["namespace"] == "istio-system" else ["capabilities"]
        )


def test_no_manifest_serves_plaintext_xds() -> None:
    for path in sorted(K8S.iterdir()):
        assert "--insecure-xds" not in path.read_text(), path.name
        assert "MECHA_INSECURE_XDS" not in path.read_text(), path.name
    container = _find("Deployment", "mecha-control-plane")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env.get("MECHA_MTLS") == "1"
    # the signing key, the mesh CA and the store live on a PersistentVolumeClaim (they survive a restart)
    state = container["command"][container["command"].index("--state-dir") + 1]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == state)
    pod = _find("Deployment", "mecha-control-plane")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = _find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["metadata"]["namespace"] == "mecha-system"


def test_every_envoy_bootstrap_reaches_only_its_agents_unix_sockets() -> None:
    for deployment, pod in _pods():
        boot = _bootstrap(deployment, pod)
        clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
        addresses = [
            lb["endpoint"]["address"]
            for c in clusters.values()
            for group in c["load_assignment"]["endpoints"]
            for lb in group["lb_endpoints"]
        ]
        assert addresses and all(set(a) == {"pipe"} for a in addresses), deployment["metadata"]["name"]
        assert {a["pipe"]["path"] for a in addresses} == {f"{SOCKET_DIR}/xds.sock", f"{SOCKET_DIR}/sds.sock"}
        ads = boot["dynamic_resources"]["ads_config"]["grpc_services"]
        assert [g["envoy_grpc"]["cluster_name"] for g in ads] == ["mecha_xds"]
        # no way to the control plane but the agent
        assert "mecha-control-plane" not in yaml.safe_dump(boot)
        mount = next(m for m in _container(pod, "envoy")["volumeMounts"] if m["mountPath"] == AGENT_DIR)
        assert _mounting(pod, mount["name"]) == sorted(
            ["envoy", next(c["name"] for c in pod["containers"] if _is_agent(c))], key=lambda n: n != "envoy"
        )


def test_credentials_are_mounted_only_into_the_agents_container() -> None:
    for deployment, pod in _pods():
        node_id = _bootstrap(deployment, pod)["node"]["id"]
        secrets = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secrets] == [f"mecha-credential-{node_id}"]
        (holder,) = _mounting(pod, secrets[0]["name"])
        assert _is_agent(_container(pod, holder))
        mount = next(m for m in _container(pod, holder)["volumeMounts"] if m["name"] == secrets[0]["name"])
        assert mount["readOnly"] is True
        argv = _container(pod, holder)["command"]
        credential = argv[
            argv.index("--agent-credential" if "--agent-credential" in argv else "--credential") + 1
        ]
        assert credential.startswith(mount["mountPath"] + "/")


def test_envoy_shares_the_socket_folder_through_its_group() -> None:
    """Envoy runs as the image's uid/gid 101; the pod's fsGroup 101 lets the agent hand its sockets to that
    group (--socket-group 101: folder 0710, sockets 0660), so Envoy connects and no other user does."""
    for _deployment, pod in _pods():
        assert pod["securityContext"]["fsGroup"] == ENVOY_GID
        envoy = _container(pod, "envoy")["securityContext"]
        assert (envoy["runAsUser"], envoy["runAsGroup"]) == (ENVOY_GID, ENVOY_GID)
        agent = next(c for c in pod["containers"] if _is_agent(c))
        argv = agent["command"]
        flag = "--agent-socket-group" if "--agent-socket-group" in argv else "--socket-group"
        assert argv[argv.index(flag) + 1] == str(ENVOY_GID)
        assert agent["securityContext"]["runAsUser"] != ENVOY_GID  # the agent is not Envoy's user
        mount = next(m for m in _container(pod, "envoy")["volumeMounts"] if m["mountPath"] == AGENT_DIR)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert set(volume) == {"name", "emptyDir"}  # the pod's own folder


def _issue_lines() -> dict[str, tuple[str, list[str]]]:
    """Secret name -> (namespace, `mecha credential issue` argv) from kubernetes/issue-credentials.sh."""
    out = {}
    for line in (K8S / "issue-credentials.sh").read_text().splitlines():
        if line.startswith("issue "):
            _, namespace, secret, dash, *argv = shlex.split(line)
            assert dash == "--" and argv[:3] == ["mecha", "credential", "issue"]
            out[secret] = (namespace, argv[3:])
    return out


def test_issued_credentials_admit_each_envoy_node_and_nothing_more(tmp_path: Path) -> None:
    """The real `mecha credential issue` run with the script's arguments: each credential lets its proxy's
    node in (the control plane's check on every stream) and refuses another proxy's node."""
    issued = _issue_lines()
    nodes = {}
    for deployment, pod in _pods():
        secret = next(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
        assert secret in issued, f"issue-credentials.sh does not make Secret {secret}"
        assert issued[secret][0] == deployment["metadata"]["namespace"]
        node = _bootstrap(deployment, pod)["node"]
        nodes[secret] = ProxyIdentity.from_node(node["id"], node["metadata"])
    assert set(nodes) == set(issued)
    state = tmp_path / "state"
    verifier = CredentialVerifier(CredentialIssuer.load_or_create(state).public_key)
    for secret, (_namespace, argv) in issued.items():
        argv = [*argv]
        argv[argv.index("--state-dir") + 1] = str(state)
        out = tmp_path / secret / "credential.jwt"
        assert mecha(["credential", "issue", *argv, "-o", str(out)]) == 0
        cred = verifier.verify(out.read_text().strip())
        assert overclaim(cred, nodes[secret]) == "", secret
        others = [n for name, n in nodes.items() if name != secret]
        assert all(overclaim(cred, other) for other in others), f"{secret} admits another proxy's node"
