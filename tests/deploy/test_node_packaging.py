"""Node mode packaging: each app has its own Dapr ports on the node's Envoy and its own runtime in the ONE
capability-service process, in compose node mode and in `mecha up --mode node` alike."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import yaml
from deploy_helpers import COMPOSE

from xds.demo.config import default_layout
from xds.proxy import ProxyIdentity
from xds.runner.stack import app_dapr_env, capabilities_argv


def _node_bootstrap() -> ProxyIdentity:
    node = yaml.safe_load((COMPOSE / "bootstrap" / "node" / "node-a.yaml").read_text())["node"]
    return ProxyIdentity.from_node(node["id"], node["metadata"])


def _app_flags(command: list[str]) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--app"]


def test_compose_node_bootstrap_gives_every_app_its_own_dapr_ports() -> None:
    proxy = _node_bootstrap()
    assert proxy.dapr_http_port is None and proxy.capabilities_http is None  # none for the node as a whole
    http = [a.dapr_http_port for a in proxy.apps]
    grpc = [a.dapr_grpc_port for a in proxy.apps]
    assert None not in http and None not in grpc
    assert len(set(http + grpc)) == 2 * len(proxy.apps)
    assert len({a.capabilities_http for a in proxy.apps}) == len(proxy.apps)


def test_compose_node_capability_process_hosts_one_runtime_per_app(topology: ModuleType) -> None:
    services: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.node.yaml").read_text())["services"]
    command = services[f"{topology.NODE_ID}-capabilities"]["command"]
    specs = [flag.split(":", 3) for flag in _app_flags(command)]
    by_app = {(a.name, a.label_map["version"]): a for a in _node_bootstrap().apps}
    assert len(specs) == len(topology.WORKLOAD_LIST) == len(by_app)
    for w, (app_id, http, grpc, url) in zip(topology.WORKLOAD_LIST, specs, strict=True):
        binding = by_app[(w.service, w.version)]
        assert app_id == w.service  # its own app id: own key prefix, pub/sub source, subscriptions
        assert binding.capabilities_http == f"127.0.0.1:{http}"  # the node's Envoy falls back to it
        assert binding.capabilities_grpc == f"127.0.0.1:{grpc}"
        assert url == f"http://127.0.0.1:{w.local_app_port}"
        app = services[w.name]
        assert app["environment"]["DAPR_HTTP_PORT"] == str(binding.dapr_http_port)
        assert app["environment"]["DAPR_GRPC_PORT"] == str(binding.dapr_grpc_port)
        if w.service in topology.SHOP_APPS:  # the shop apps talk to their own Dapr listener
            assert f"http://127.0.0.1:{binding.dapr_http_port}" in app["command"]


def test_shared_subscription_targets_the_inventory_app_id() -> None:
    docs = list(yaml.safe_load_all((COMPOSE / "config" / "dapr.yaml").read_text()))
    sub = next(d for d in docs if d["kind"] == "Subscription")
    assert sub["scopes"] == ["inventory"]


def test_mecha_up_node_mode_starts_one_capability_process_for_every_app() -> None:
    layout = default_layout("node")
    (proxy,) = layout.proxies
    argv = capabilities_argv(proxy, "http://127.0.0.1:15010")
    flags = _app_flags(argv)
    assert [f.split(":", 1)[0] for f in flags] == [w.service for w in proxy.workloads]
    assert "--app-id" not in argv
    meta = ProxyIdentity.from_node(proxy.id, {"mecha": proxy.metadata()})
    for w, binding, flag in zip(proxy.workloads, meta.apps, flags, strict=True):
        assert binding.dapr_http_port == w.dapr_http_port
        assert binding.capabilities_http == f"127.0.0.1:{flag.split(':')[1]}"
        assert app_dapr_env(layout, w.name)["DAPR_HTTP_PORT"] == str(w.dapr_http_port)
    ports = list(layout.ports().values()) + list(layout.capability_ports().values())
    assert len(ports) == len(set(ports))  # nothing bound twice


def test_sidecar_layout_keeps_one_capability_service_per_proxy() -> None:
    layout = default_layout("sidecar")
    for proxy in layout.proxies:
        argv = capabilities_argv(proxy, "http://127.0.0.1:15010")
        assert "--app" not in argv and argv[argv.index("--app-id") + 1] == proxy.workloads[0].service
        assert "dapr_http_port" in proxy.metadata()
