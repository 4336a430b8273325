"""The rendered ingress gateway (compose container, Kubernetes Deployment) serves a Gateway API Gateway beside
the Istio Gateways its labels select: its node metadata names it, and the control plane programs its routes on
the same listener (offline: the bootstraps and manifests as rendered, the config compiled and translated)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_helpers import COMPOSE

from xds import pipeline, types
from xds.pipeline import SnapshotBuilder, resource_to_dict
from xds.proxy import ProxyIdentity, ProxyMode

GATEWAY_BOOTSTRAPS = [
    "bootstrap/gateway/sidecar.yaml",
    "bootstrap/gateway/node.yaml",
    "bootstrap/replicas/gateway.yaml",
]
MANIFESTS = ["kubernetes/gateway.yaml", "kubernetes/replicas/gateway.yaml"]


def _node(bootstrap: str) -> ProxyIdentity:
    node = yaml.safe_load(bootstrap)["node"]
    return ProxyIdentity.from_node(node["id"], node["metadata"])


def _manifest_bootstrap(path: Path) -> str:
    """envoy.yaml of the gateway's ConfigMap in a rendered Kubernetes manifest."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap" and "envoy.yaml" in d.get("data", {})]
    return str(config_map["data"]["envoy.yaml"])


def _gateway_proxies() -> dict[str, ProxyIdentity]:
    found = {name: _node((COMPOSE / name).read_text()) for name in GATEWAY_BOOTSTRAPS}
    found |= {name: _node(_manifest_bootstrap(COMPOSE / name)) for name in MANIFESTS}
    return found


@pytest.mark.parametrize("name", GATEWAY_BOOTSTRAPS + MANIFESTS)
def test_the_ingress_gateway_names_the_gateway_api_gateway(name: str, topology: ModuleType) -> None:
    proxy = _gateway_proxies()[name]
    assert proxy.mode is ProxyMode.GATEWAY
    assert proxy.gateways == topology.GATEWAY_API_GATEWAYS == ("default/bookinfo",)
    assert proxy.label_map == {"istio": "ingressgateway"}  # Istio Gateways still select it


def _routes(proxy: ProxyIdentity) -> tuple[list[str], dict[str, Any]]:
    paths = [COMPOSE / "config", COMPOSE / "endpoints" / "local", COMPOSE / "gateway-api" / "bookinfo.yaml"]
    docs, load_diags = pipeline.load_paths([str(p) for p in paths])
    result = pipeline.compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*load_diags, *result.errors]]
    snap = SnapshotBuilder().build(result.config, [proxy])[proxy.id]
    listeners = sorted(snap.of(types.LISTENER))
    routes = {n: resource_to_dict(types.ROUTE, r.body) for n, r in snap.of(types.ROUTE).items()}
    return listeners, routes


def test_the_gateway_api_route_is_served_beside_the_istio_one() -> None:
    """One listener (port 80 bound as 8080) and one route table (named by the bound port): the Istio
    VirtualService's `*` and the HTTPRoute's bookinfo.example.com virtual hosts, each to productpage."""
    proxy = _gateway_proxies()["bootstrap/gateway/sidecar.yaml"]
    listeners, routes = _routes(proxy)
    assert listeners == ["0.0.0.0_8080"]
    vhosts = {v["domains"][0]: v["routes"] for v in routes["http.8080"]["virtualHosts"]}
    assert set(vhosts) == {"*", "bookinfo.example.com"}
    for host in vhosts:
        [route] = [r for r in vhosts[host] if r["match"].get("path") == "/productpage"]
        assert "productpage" in route["route"]["cluster"], route


def test_without_the_binding_the_gateway_api_route_is_not_served() -> None:
    """The binding is what serves it: the same proxy without `gateways` gets the Istio routes only."""
    proxy = _gateway_proxies()["bootstrap/gateway/sidecar.yaml"]
    unbound = ProxyIdentity.from_node(
        proxy.id,
        {"mecha": {"mode": "gateway", "labels": {"istio": "ingressgateway"}, "gateway_ports": {"80": 8080}}},
    )
    _, routes = _routes(unbound)
    assert {v["domains"][0] for v in routes["http.8080"]["virtualHosts"]} == {"*"}
