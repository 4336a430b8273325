"""Fault and CORS HTTP filters only on listeners whose route tables can carry a VirtualService route
(issue #17).

Both act only through a route's typed_per_filter_config, yet an empty filter still runs on every request.
Inbound and Dapr route tables never carry a VirtualService route: their listeners get the router only,
whatever the config. The outbound listener (and its internal twin with scoped tables) keeps both even
without a fault or corsPolicy, so adding one is an RDS-only change that applies to open connections
(tests/xds/config/test_route_filters_envoy.py shows it on a real Envoy).
"""

from __future__ import annotations

import pytest
from cfg_helpers import compile_text, decoded, errors, sidecar
from translate_oracle import build_naive

from xds.model.mesh import MeshConfig
from xds.pipeline import SnapshotBuilder

FAULT = "envoy.filters.http.fault"
CORS = "envoy.filters.http.cors"
ROUTER = "envoy.filters.http.router"
HCM = "envoy.filters.network.http_connection_manager"


def service(port: int = 8080) -> str:
    """ServiceEntry `web` on 8080, its endpoint on 127.0.0.1:port."""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"""


SERVICE = service()


def _vs(route_fields: str = "") -> str:
    """The VirtualService `web`, one route to `web` with route_fields (a fault, a corsPolicy) added."""
    return f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - {route_fields}route: [{{destination: {{host: web}}}}]
"""


PLAIN_VS = _vs()
FAULT_VS = _vs("fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    ")
CORS_VS = _vs('corsPolicy: {allowOrigins: [{exact: "https://app.example.com"}], allowMethods: [GET]}\n    ')


def _config(text: str) -> MeshConfig:
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in errors(result)]
    return result.config


def _filters(text: str, route_tables: str = "single") -> dict[str, list[str]]:
    proxy = sidecar()
    snap = SnapshotBuilder(route_tables=route_tables).build(_config(text), [proxy])[proxy.id]
    out = {}
    for name, listener in decoded(snap, "LDS").items():
        for chain in listener["filterChains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    out[name] = [h["name"] for h in f["typedConfig"]["httpFilters"]]
    return out


ROUTER_ONLY_LISTENERS = ("virtualInbound_15006", "dapr_http_3500", "dapr_grpc_50001")
OUTBOUND = "0.0.0.0_15001"


@pytest.mark.parametrize("vs", [PLAIN_VS, FAULT_VS, CORS_VS])
def test_inbound_and_dapr_listeners_have_the_router_only(vs: str) -> None:
    chains = _filters(SERVICE + vs)
    assert set(chains) == {OUTBOUND, *ROUTER_ONLY_LISTENERS}
    for name in ROUTER_ONLY_LISTENERS:
        assert chains[name] == [ROUTER], name  # their tables never carry a VirtualService route


@pytest.mark.parametrize("vs", [PLAIN_VS, FAULT_VS, CORS_VS])
def test_outbound_listener_keeps_fault_and_cors_in_istiods_order(vs: str) -> None:
    assert _filters(SERVICE + vs)[OUTBOUND] == [FAULT, CORS, ROUTER]


@pytest.mark.parametrize("vs", [PLAIN_VS, FAULT_VS])
def test_scoped_tables_internal_listener_keeps_them_dapr_listener_does_not(vs: str) -> None:
    """Dapr invocation re-enters the outbound scopes through the internal listener: it routes by
    VirtualService routes, so it has the outbound listener's filters; the Dapr listener itself has none."""
    chains = _filters(SERVICE + vs, route_tables="scoped")
    internal = [name for name in chains if name not in (OUTBOUND, *ROUTER_ONLY_LISTENERS)]
    assert internal, chains
    for name in [OUTBOUND, *internal]:
        assert chains[name] == [FAULT, CORS, ROUTER], name
    for name in ROUTER_ONLY_LISTENERS:
        assert chains[name] == [ROUTER], name


@pytest.mark.parametrize("vs", [PLAIN_VS, FAULT_VS, CORS_VS])
def test_reference_path_emits_the_same_listeners(vs: str) -> None:
    config, proxy = _config(SERVICE + vs), sidecar()
    snap = SnapshotBuilder().build(config, [proxy])[proxy.id]
    assert decoded(snap, "LDS") == decoded(build_naive(config, proxy), "LDS")
