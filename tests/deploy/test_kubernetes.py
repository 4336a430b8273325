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
    for path in sorted(p for p in K8S.rglob("*") if p.is_file()):  # replicas/ included
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


# ---- the multi-replica variant (issue #13): kubernetes/replicas/ ----------------------------------------

REPLICAS = K8S / "replicas"
REPLICA_FILES = ["postgres.yaml", "control-plane.yaml", "apps.yaml", "gateway.yaml"]
XDS_TARGET = "dns:///mecha-control-plane-xds.mecha-system.svc.cluster.local:15012"


def _replica_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPLICAS / name).read_text()) if d]


def _replica_find(kind: str, name: str) -> dict[str, Any]:
    for file in REPLICA_FILES:
        for doc in _replica_docs(file):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in kubernetes/replicas")


def _replica_control_plane() -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, control-plane container) of the replicas' Deployment."""
    pod = _replica_find("Deployment", "mecha-control-plane")["spec"]["template"]["spec"]
    return pod, _container(pod, "control-plane")


def _volume_of(pod: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    return dict(next(v for v in pod["volumes"] if v["name"] == mount["name"]))


@pytest.mark.parametrize("name", REPLICA_FILES)
def test_replica_manifests_match_the_kubernetes_schema(name: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extra)")
    docs = _replica_docs(name)
    assert docs
    for doc in docs:
        kv.validate(doc, "1.30.0", strict=True)


def test_two_control_plane_replicas_on_the_store_from_a_secret() -> None:
    deployment = _replica_find("Deployment", "mecha-control-plane")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod, container = _replica_control_plane()
    env = {e["name"]: e for e in container["env"]}
    assert env["MECHA_STORE"]["valueFrom"]["secretKeyRef"] == {"name": "mecha-store", "key": "url"}
    assert "value" not in env["MECHA_STORE"]  # the URL (with its password) is never in the manifest
    assert env["MECHA_MTLS"]["value"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # nothing exclusive to one pod: no ReadWriteOnce claim shared by the replicas
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
    budget = _replica_find("PodDisruptionBudget", "mecha-control-plane")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_demo_postgres_holds_the_password_of_the_store_secret() -> None:
    statefulset = _replica_find("StatefulSet", "mecha-postgres")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mecha-store", "key": "password"}
    script = (REPLICAS / "create-secrets.sh").read_text()
    url = next(line for line in script.splitlines() if line.startswith("url="))
    user, host = env["POSTGRES_USER"]["value"], statefulset["spec"]["serviceName"]
    assert f"postgresql://{user}:$password@{host}.mecha-system.svc.cluster.local:5432/" in url
    assert _replica_find("Service", host)["spec"]["clusterIP"] == "None"


def test_every_replica_mounts_the_cacerts_and_gets_the_shared_signing_key() -> None:
    pod, container = _replica_control_plane()
    env = {e["name"]: e.get("value") for e in container["env"]}
    cacerts = _volume_of(pod, container, env["MECHA_CA_DIR"])
    assert cacerts["secret"]["secretName"] == "cacerts"
    assert next(m for m in container["volumeMounts"] if m["mountPath"] == env["MECHA_CA_DIR"])["readOnly"]
    # the signing key reaches each pod's state folder from one Secret, in memory, copied before the start
    state_dir = container["command"][container["command"].index("--state-dir") + 1]
    state = _volume_of(pod, container, state_dir)
    assert state["emptyDir"]["medium"] == "Memory"
    (init,) = pod["initContainers"]
    keys = _volume_of(pod, init, "/etc/mecha/keys")
    assert keys["secret"]["secretName"] == "mecha-control-plane-keys"
    copy = init["command"][-1]
    assert "$k/signing-key.pem $s/identity/signing-key.pem" in copy and f"s={state_dir};" in copy
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert all(m["name"] != keys["name"] for m in container["volumeMounts"])  # serve reads its own copy


def test_agents_dial_every_replica_through_the_headless_service() -> None:
    xds = _replica_find("Service", "mecha-control-plane-xds")["spec"]
    assert xds["clusterIP"] == "None"
    deployment = _replica_find("Deployment", "mecha-control-plane")
    assert xds["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in xds["ports"]] == [15012]
    pods = [
        doc["spec"]["template"]["spec"]
        for file in ("apps.yaml", "gateway.yaml")
        for doc in _replica_docs(file)
        if doc["kind"] == "Deployment"
    ]
    assert len(pods) == 7  # six workloads and the ingress gateway
    for pod in pods:
        agent = next(c for c in pod["containers"] if _is_agent(c))
        argv = agent["command"]
        flag = "--agent-control-plane" if "--agent-control-plane" in argv else "--control-plane"
        assert argv[argv.index(flag) + 1] == XDS_TARGET


def test_the_agent_pings_a_dns_name_of_replicas_at_the_replica_rate() -> None:
    """A dns:/// target is several replicas behind one name: the channel pings as fast as for a list (a
    frozen replica is left within seconds) and the replicas' ping policy accepts it."""
    from xds.agent.channel import channel_target, keepalive_options
    from xds.bootstrap import REPLICA_KEEPALIVE
    from xds.controlplane.runtime import replica_keepalive

    options = dict(keepalive_options(XDS_TARGET))
    interval_ms = int(float(REPLICA_KEEPALIVE[0].removesuffix("s")) * 1000)
    assert options["grpc.keepalive_time_ms"] == interval_ms
    assert interval_ms >= dict(replica_keepalive())["grpc.http2.min_ping_interval_without_data_ms"]
    assert channel_target(XDS_TARGET) == XDS_TARGET  # gRPC resolves (and re-resolves) the name itself


def test_replica_credentials_are_signed_in_a_replica_with_the_cacerts_root() -> None:
    script = (REPLICAS / "issue-credentials.sh").read_text()
    _pod, container = _replica_control_plane()
    ca_dir = next(e["value"] for e in container["env"] if e["name"] == "MECHA_CA_DIR")
    assert f"cat {ca_dir}/root-cert.pem" in script
    assert "exec deploy/mecha-control-plane" in script
    base = {s: argv for s, (_ns, argv) in _issue_lines().items()}
    issued = [shlex.split(line) for line in script.splitlines() if line.startswith("issue ")]
    assert {line[2]: line[7:] for line in issued} == base  # the same credentials as one replica's


def test_create_secrets_makes_the_shared_keys_with_mecha_and_never_replaces_them(tmp_path: Path) -> None:
    script = (REPLICAS / "create-secrets.sh").read_text()
    assert 'mecha keys init --state-dir "$work/state"' in script
    assert 'get secret "$name"' in script and "exists: kept" in script
    state = tmp_path / "state"
    assert mecha(["keys", "init", "--state-dir", str(state)]) == 0
    for name in ("identity/signing-key.pem", "ca/root-cert.pem", "ca/root-key.pem", "api-token"):
        assert (state / name).stat().st_mode & 0o077 == 0, name
    signing = (state / "identity/signing-key.pem").read_bytes()
    assert mecha(["keys", "init", "--state-dir", str(state)]) == 0  # kept: credentials stay valid
    assert (state / "identity/signing-key.pem").read_bytes() == signing
    # what it made is what a control plane signs with and serves as the mesh root
    from xds.ca.authority import CertificateAuthority

    issuer = CredentialIssuer.load_or_create(state)
    token, _ = issuer.issue("p", "default", ["p"])
    assert CredentialVerifier(issuer.public_key).verify(token).proxy_id == "p"
    ca = CertificateAuthority.load_or_create(state / "ca")
    assert ca.root_pem == (state / "ca/root-cert.pem").read_bytes()


def test_keys_init_names_a_folder_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    assert mecha(["keys", "init", "--state-dir", str(tmp_path / "taken")]) != 0
    assert "taken" in capsys.readouterr().err
