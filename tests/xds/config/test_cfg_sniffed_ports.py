"""Ports that declare no protocol are sniffed (istiod's protocol detection) on the proxy's local TCP
listener; the HTTP chain carries the service's routes, so a route change must reach that listener too."""

from __future__ import annotations

from cfg_helpers import compile_text, decoded

from xds.model.resources import ServicePort
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity

ENTRY = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{number: 8080, name: web}]
  endpoints: [{address: 10.0.8.1, labels: {version: v1}}, {address: 10.0.8.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec: {host: web, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: SUBSET}}]}]
"""


def _proxy() -> ProxyIdentity:
    meta = {"mode": "sidecar", "namespace": "default", "outbound_port": 15001, "tcp_ports": {"8080": 18080}}
    return ProxyIdentity.from_node("client", {"mecha": meta})


def _http_cluster(snap) -> str:  # type: ignore[no-untyped-def]
    listener = decoded(snap, "LDS", snake_case=True)["0.0.0.0_8080"]
    (chain,) = listener["filter_chains"]
    manager = chain["filters"][0]["typed_config"]
    (vhost,) = manager["route_config"]["virtual_hosts"]
    return str(vhost["routes"][0]["route"]["cluster"])


def test_a_port_without_protocol_is_sniffed_and_an_explicit_one_is_kept() -> None:
    config = compile_text(ENTRY.replace("SUBSET", "v1")).config
    assert config is not None
    (web,) = [s for s in config.services if s.host.startswith("web.")]
    assert [p.is_sniffed for p in web.ports] == [True]
    assert web.ports[0].is_http  # still routed as HTTP on the outbound listener
    assert not ServicePort(8080, "HTTP").is_sniffed and not ServicePort(8080, "TCP").is_sniffed


def test_a_route_change_reaches_the_sniffed_listener() -> None:
    builder, proxy = SnapshotBuilder(), _proxy()
    for subset in ("v1", "v2"):
        result = compile_text(ENTRY.replace("SUBSET", subset))
        assert result.config is not None
        snap = builder.build(result.config, [proxy])[proxy.id]
        assert _http_cluster(snap) == f"outbound|8080|{subset}|web.default.svc.cluster.local"


def test_a_destination_rule_change_reaches_the_sniffed_listener() -> None:
    """The routes read more than the VirtualService: a consistent hash of the DestinationRule is a route
    hash policy, so the listener is rebuilt when the rule changes."""
    builder, proxy = SnapshotBuilder(), _proxy()
    hashed = "spec: {host: web, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}},"
    for text, want in ((ENTRY, None), (ENTRY.replace("spec: {host: web,", hashed), "x-user")):
        result = compile_text(text.replace("SUBSET", "v1"))
        assert result.config is not None
        snap = builder.build(result.config, [proxy])[proxy.id]
        listener = decoded(snap, "LDS", snake_case=True)["0.0.0.0_8080"]
        route = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        policy = route["virtual_hosts"][0]["routes"][0]["route"].get("hash_policy")
        assert (policy[0]["header"]["header_name"] if policy else None) == want


def test_the_sniffed_http_chain_normalizes_paths_as_the_mesh_says() -> None:
    """meshConfig.pathNormalization reaches every HTTP connection manager, the sniffed one too: a route
    matched on an unmerged `//admin` path would otherwise see a different path than the outbound listener."""
    result = compile_text(ENTRY.replace("SUBSET", "v1"))
    assert result.config is not None
    proxy = _proxy()
    snap = SnapshotBuilder(path_normalization="MERGE_SLASHES").build(result.config, [proxy])[proxy.id]
    listener = decoded(snap, "LDS", snake_case=True)["0.0.0.0_8080"]
    (chain,) = listener["filter_chains"]
    manager = chain["filters"][0]["typed_config"]
    assert manager.get("merge_slashes") is True, manager
    assert manager.get("normalize_path") is True
