"""Every Envoy of the compose files and Kubernetes manifests has its agent pointed at its own admin.

Envoy's admin binds loopback only, so the control plane's `mecha proxy-config` reads it through the proxy's
agent (the admin relay, xds/agent/adminrelay.py): the agent needs --envoy-admin (`mecha agent`) or
--agent-envoy-admin (capability service) naming that Envoy's loopback admin, and must share its network
namespace. Without it proxy-config answers 409 (no relay, no announced admin).
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE

COMPOSE_FILES = ["docker-compose.sidecar.yaml", "docker-compose.node.yaml", "docker-compose.replicas.yaml"]
K8S_FILES = ["apps.yaml", "gateway.yaml", "replicas/apps.yaml", "replicas/gateway.yaml"]
BOOTSTRAP_MOUNT = "/etc/envoy/envoy.yaml"
AGENT_DIR = "/var/lib/mecha-agent"  # compose/agents.py: the socket volume Envoy and its agent share
ADMIN_FLAGS = ("--envoy-admin", "--agent-envoy-admin")


def _admin_of(bootstrap: dict[str, Any]) -> str:
    address = bootstrap["admin"]["address"]["socket_address"]
    assert address["address"] == "127.0.0.1", address  # loopback only: the reason for the relay
    return f"127.0.0.1:{address['port_value']}"


def _relayed_admin(argv: list[str]) -> str | None:
    """The admin an agent's command line relays (None: not an agent, or no admin given)."""
    for flag in ADMIN_FLAGS:
        if flag in argv:
            return argv[argv.index(flag) + 1]
    return None


def _is_agent(argv: list[str]) -> bool:
    return argv[:2] == ["mecha", "agent"] or "--agent-credential" in argv


def _mount(service: dict[str, Any], target: str) -> str | None:
    """The source of the service's volume mounted at target."""
    for volume in service.get("volumes", []):
        source, path = volume.split(":")[:2]
        if path == target:
            return source
    return None


def _netns(name: str, service: dict[str, Any]) -> str:
    return str(service.get("network_mode", f"service:{name}")).removeprefix("service:")


def _compose_envoys(name: str) -> list[tuple[str, str, str, list[str]]]:
    """(Envoy, its admin, the network namespace it runs in, its agent's argv) of every Envoy of a file."""
    services: dict[str, Any] = yaml.safe_load((COMPOSE / name).read_text())["services"]
    out = []
    for svc_name, svc in services.items():
        argv = [str(a) for a in svc.get("command", [])]
        bootstrap = _mount(svc, BOOTSTRAP_MOUNT)
        if not bootstrap:
            continue
        admin = _admin_of(yaml.safe_load((COMPOSE / bootstrap).read_text()))
        if argv[:3] == ["python", "-m", "xds.runner.pod"]:  # a replica: agent and Envoy in one container
            assert argv[argv.index("--admin") + 1] == admin  # what it drains on SIGTERM
            out.append((svc_name, admin, svc_name, shlex.split(argv[argv.index("--capabilities") + 1])))
            continue
        assert argv[0] == "envoy", svc_name
        sockets = _mount(svc, AGENT_DIR)
        sharing = [
            n for n, s in services.items() if n != svc_name and sockets and _mount(s, AGENT_DIR) == sockets
        ]
        (agent,) = sharing  # the one other service serving Envoy's socket volume
        agent_argv = [str(a) for a in services[agent]["command"]]
        assert _is_agent(agent_argv), agent
        assert _netns(agent, services[agent]) == _netns(svc_name, svc), (
            f"{agent} is not in {svc_name}'s netns"
        )
        out.append((svc_name, admin, _netns(svc_name, svc), agent_argv))
    return out


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_compose_envoy_has_its_agent_relay_its_admin(name: str) -> None:
    envoys = _compose_envoys(name)
    assert len(envoys) == (2 if "node" in name else 7), envoys  # node + gateway; six replicas + gateway
    for envoy, admin, _netns_owner, agent_argv in envoys:
        assert _relayed_admin(agent_argv) == admin, f"{name}: the agent of {envoy} does not relay {admin}"
    # two Envoys sharing a network namespace (node mode) have distinct admins
    per_netns = [(netns, admin) for _, admin, netns, _ in envoys]
    assert len(per_netns) == len(set(per_netns))


def _k8s_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((COMPOSE / "kubernetes" / name).read_text()) if d]


@pytest.mark.parametrize("name", K8S_FILES)
def test_every_kubernetes_envoy_has_its_agent_relay_its_admin(name: str) -> None:
    """A pod is one network namespace: the agent container beside Envoy relays Envoy's loopback admin."""
    docs = _k8s_docs(name)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    envoy_pods = [p for p in pods if any(c["name"] == "envoy" for c in p["containers"])]
    assert len(envoy_pods) == (1 if "gateway" in name else 6), name
    for pod in envoy_pods:
        configmap = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "bootstrap")
        admin = _admin_of(yaml.safe_load(configmaps[configmap]["data"]["envoy.yaml"]))
        (agent,) = [c for c in pod["containers"] if _is_agent([str(a) for a in c["command"]])]
        assert _relayed_admin([str(a) for a in agent["command"]]) == admin, (configmap, agent["name"])
