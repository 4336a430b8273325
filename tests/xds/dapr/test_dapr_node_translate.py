"""Translation of node mode's per-app Dapr listeners and of DAPR_API_TOKEN / APP_API_TOKEN."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "config"))  # the oracle translator
from dataclasses import replace
from typing import Any

import pytest
from translate_oracle import build_naive

from xds import types
from xds.cache.snapshot import Snapshot
from xds.model.mesh import MeshConfig
from xds.pipeline import SnapshotBuilder, compile_documents, load_text, resource_to_dict
from xds.proxy import ProxyIdentity, ProxyIdentityError

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: alpha, namespace: default}
spec:
  hosts: [alpha]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 15006}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: beta, namespace: default}
spec:
  hosts: [beta]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, ports: {http: 15007, grpc: 15007}}]
"""


@pytest.fixture(scope="module")
def config() -> MeshConfig:
    docs, diags = load_text(MESH, "mesh.yaml")
    result = compile_documents(docs)
    assert result.config is not None, [str(d) for d in [*diags, *result.diagnostics]]
    return result.config


def app(name: str, index: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "app_port": 9081 + index,
        "inbound_port": 15006 + index,
        "dapr_http_port": 3500 + index,
        "dapr_grpc_port": 50001 + index,
        "capabilities_http": f"127.0.0.1:{3600 + index}",
        "capabilities_grpc": f"127.0.0.1:{50101 + index}",
        **extra,
    }


def node(proxy_id: str = "node-a", apps: list[dict[str, Any]] | None = None, **meta: Any) -> ProxyIdentity:
    apps = apps if apps is not None else [app("alpha", 0), app("beta", 1)]
    return ProxyIdentity.from_node(
        proxy_id, {"mecha": {"mode": "node", "outbound_port": 15001, "apps": apps, **meta}}
    )


def decoded(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    url = types.FROM_SHORT[short]
    return {n: resource_to_dict(url, r.body) for n, r in sorted(snap.of(url).items())}


def build(config: MeshConfig, *proxies: ProxyIdentity) -> dict[str, Snapshot]:
    return SnapshotBuilder().build(config, list(proxies))


def routes(rc: dict[str, Any]) -> list[dict[str, Any]]:
    return rc["virtualHosts"][0]["routes"]


# ---- node metadata ---------------------------------------------------------------------------------


def test_app_bindings_carry_their_dapr_ports_capability_addresses_and_tokens() -> None:
    proxy = node(apps=[app("alpha", 0, dapr_api_token="t-a", app_api_token="app-a"), app("beta", 1)])
    alpha, beta = proxy.apps
    assert (alpha.dapr_http_port, alpha.dapr_grpc_port) == (3500, 50001)
    assert (alpha.capabilities_http, alpha.capabilities_grpc) == ("127.0.0.1:3600", "127.0.0.1:50101")
    assert (alpha.dapr_api_token, alpha.app_api_token) == ("t-a", "app-a")
    assert beta.dapr_api_token is None and beta.has_dapr
    assert "t-a" not in repr(proxy)  # tokens stay out of logs


BAD_METADATA = [
    ([app("alpha", 0), app("beta", 0)], {}, "apps[1].dapr_http_port: port 3500 is also apps[0]"),
    ([app("alpha", 0)], {"dapr_grpc_port": 50001}, "apps[0].dapr_grpc_port: port 50001 is also dapr_grpc"),
    ([app("alpha", 0, capabilities_http="nohost")], {}, "apps[0].capabilities_http: 'nohost' is not host:"),
    ([app("alpha", 0, capabilities_http="h:99999")], {}, "apps[0].capabilities_http: 99999 is out of"),
    ([app("alpha", 0, dapr_api_token="a b")], {}, "apps[0].dapr_api_token: contains whitespace"),
    ([app("alpha", 0)], {"app_api_token": 7}, "app_api_token: expected a string"),
    ([app("alpha", 0, dapr_http_port="x")], {}, "apps[0].dapr_http_port: 'x' is not a port number"),
]


@pytest.mark.parametrize(("apps", "meta", "message"), BAD_METADATA)
def test_bad_node_metadata_names_the_field(
    apps: list[dict[str, Any]], meta: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProxyIdentityError, match=message.replace("[", r"\[").replace("]", r"\]")):
        node(apps=apps, **meta)


# ---- per-app Dapr listeners ------------------------------------------------------------------------


def test_each_app_gets_its_own_dapr_listeners_routes_and_capability_cluster(config: MeshConfig) -> None:
    proxy = node()
    snap = build(config, proxy)[proxy.id]
    lds = decoded(snap, "LDS")
    assert {"dapr_http_3500", "dapr_grpc_50001", "dapr_http_3501", "dapr_grpc_50002"} <= set(lds)
    hcm = lds["dapr_http_3501"]["filterChains"][0]["filters"][0]["typedConfig"]
    assert hcm["rds"]["routeConfigName"] == "dapr-http|beta"
    assert lds["dapr_http_3501"]["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 3501}
    rds = decoded(snap, "RDS")
    assert {"dapr-http|alpha", "dapr-grpc|alpha", "dapr-http|beta", "dapr-grpc|beta"} <= set(rds)
    assert "dapr-http" not in rds  # no proxy-level Dapr port in this node's metadata
    alpha = routes(rds["dapr-http|alpha"])
    assert [r["name"] for r in alpha[:4]] == [
        "invoke/alpha",
        "invoke/alpha.default",
        "invoke/beta",
        "invoke/beta.default",
    ]
    assert alpha[-1]["route"]["cluster"] == "capabilities_http|alpha"  # the fallback: alpha's runtime
    assert routes(rds["dapr-grpc|beta"])[-1]["route"]["cluster"] == "capabilities_grpc|beta"
    cds = decoded(snap, "CDS")
    target = cds["capabilities_http|beta"]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]
    assert target["endpoint"]["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 3601}
    assert "http2ProtocolOptions" in str(cds["capabilities_grpc|beta"])


def test_fast_path_equals_the_reference_path(config: MeshConfig) -> None:
    proxy = node(
        apps=[app("alpha", 0, dapr_api_token="ta", app_api_token="aa"), app("beta", 1), app("beta", 2)],
        dapr_api_token="proxy-token",
        dapr_http_port=3599,
        capabilities_http="127.0.0.1:3699",
    )
    snap = build(config, proxy)[proxy.id]
    naive = build_naive(config, proxy)
    for short in ("CDS", "EDS", "LDS", "RDS"):
        assert decoded(snap, short) == decoded(naive, short), short


def test_replicas_with_one_name_get_port_suffixed_resources(config: MeshConfig) -> None:
    proxy = node(apps=[app("beta", 0), app("beta", 1)])
    rds = decoded(build(config, proxy)[proxy.id], "RDS")
    assert {"dapr-http|beta|3500", "dapr-http|beta|3501"} <= set(rds)
    assert routes(rds["dapr-http|beta|3501"])[-1]["route"]["cluster"] == "capabilities_http|beta|3501"


def test_an_app_without_its_own_capability_address_falls_back_to_the_proxys(config: MeshConfig) -> None:
    lone = {k: v for k, v in app("alpha", 0).items() if not k.startswith("capabilities_")}
    proxy = node(apps=[lone], capabilities_http="127.0.0.1:3700")
    snap = build(config, proxy)[proxy.id]
    assert routes(decoded(snap, "RDS")["dapr-http|alpha"])[-1]["route"]["cluster"] == "capabilities_http"
    assert "capabilities_http|alpha" not in decoded(snap, "CDS")


def test_equal_route_configs_are_shared_across_node_proxies(config: MeshConfig) -> None:
    a, b = node("node-a"), node("node-b", apps=[app("alpha", 5), app("beta", 6)])  # other ports
    snaps = build(config, a, b)
    got_a, got_b = snaps["node-a"].of(types.ROUTE), snaps["node-b"].of(types.ROUTE)
    assert got_a["dapr-http|alpha"] is got_b["dapr-http|alpha"]  # one serialized RouteConfiguration
    other = node("node-c", apps=[app("alpha", 0, dapr_api_token="t")])
    snaps = build(config, a, other)
    assert snaps["node-a"].of(types.ROUTE)["dapr-http|alpha"].body != (
        snaps["node-c"].of(types.ROUTE)["dapr-http|alpha"].body
    )


# ---- DAPR_API_TOKEN / APP_API_TOKEN ------------------------------------------------------------------


def test_invoke_routes_require_the_token_strip_it_and_reject_the_rest(config: MeshConfig) -> None:
    proxy = node(dapr_api_token="s3cret")
    rc = routes(decoded(build(config, proxy)[proxy.id], "RDS")["dapr-http|alpha"])
    by_name = {r["name"]: r for r in rc}
    token = {"name": "dapr-api-token", "stringMatch": {"exact": "s3cret"}}
    invoke = by_name["invoke/beta"]
    assert invoke["match"]["headers"] == [token]
    assert invoke["requestHeadersToRemove"] == ["dapr-api-token"]
    header = by_name["app-id/beta"]
    assert header["match"]["headers"] == [{"name": "dapr-app-id", "stringMatch": {"exact": "beta"}}, token]
    assert header["requestHeadersToRemove"] == ["dapr-app-id", "dapr-api-token"]
    names = [r["name"] for r in rc]
    # after every invoke route, before the capability service: the 401s for a wrong or missing token
    assert names[-3:] == ["invoke/unauthorized", "app-id/unauthorized", "capabilities"]
    reject = by_name["invoke/unauthorized"]
    assert reject["match"]["prefix"] == "/v1.0/invoke/"
    assert reject["match"]["headers"] == [{**token, "invertMatch": True, "treatMissingHeaderAsEmpty": True}]
    assert reject["directResponse"]["status"] == 401
    body = reject["directResponse"]["body"]["inlineString"]
    assert body == '{"errorCode":"ERR_UNAUTHORIZED","message":"invalid api token"}'
    app_id = by_name["app-id/unauthorized"]["match"]["headers"]
    assert app_id[0] == {"name": "dapr-app-id", "presentMatch": True}


def test_grpc_listener_rejects_with_a_trailers_only_unauthenticated(config: MeshConfig) -> None:
    proxy = node(dapr_api_token="s3cret")
    rc = routes(decoded(build(config, proxy)[proxy.id], "RDS")["dapr-grpc|alpha"])
    assert [r["name"] for r in rc][-3:] == ["app-id/missing-token", "app-id/unauthorized", "capabilities"]
    answers = {}
    for route in rc[-3:-1]:
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["responseHeadersToAdd"]}
        assert headers["grpc-status"] == "16" and headers["content-type"] == "application/grpc"
        assert route["directResponse"]["status"] == 200  # trailers-only: gRPC status in the headers
        answers[route["name"]] = headers["grpc-message"]
    # daprd's own messages for a missing and a wrong token
    assert answers == {
        "app-id/missing-token": "missing api token in request metadata",
        "app-id/unauthorized": "authentication error: api token mismatch",
    }
    missing = rc[-3]["match"]["headers"][1]
    assert missing == {"name": "dapr-api-token", "presentMatch": True, "invertMatch": True}
    assert not [r for r in rc if r["name"] == "invoke/unauthorized"]  # no invoke-by-path on gRPC


def test_an_apps_own_token_overrides_the_proxys(config: MeshConfig) -> None:
    proxy = node(apps=[app("alpha", 0, dapr_api_token="mine"), app("beta", 1)], dapr_api_token="node")
    rds = decoded(build(config, proxy)[proxy.id], "RDS")
    assert "mine" in str(rds["dapr-http|alpha"]) and "node" not in str(routes(rds["dapr-http|alpha"]))
    assert "'exact': 'node'" in str(rds["dapr-http|beta"])


def test_without_a_token_routes_are_unchanged(config: MeshConfig) -> None:
    proxy = node()
    rds = decoded(build(config, proxy)[proxy.id], "RDS")
    text = str(rds["dapr-http|alpha"])
    assert "dapr-api-token" not in text and "unauthorized" not in text
    assert "requestHeadersToAdd" not in str(rds["inbound|15006||"])


def test_sidecar_token_applies_to_the_proxy_level_listener(config: MeshConfig) -> None:
    proxy = ProxyIdentity.from_node(
        "alpha-v1",
        {
            "mecha": {
                "mode": "sidecar",
                "dapr_http_port": 3500,
                "capabilities_http": "127.0.0.1:3501",
                "dapr_api_token": "side",
                "apps": [{"name": "alpha", "app_port": 9080, "inbound_port": 15006}],
            }
        },
    )
    rds = decoded(build(config, proxy)[proxy.id], "RDS")
    names = [r["name"] for r in routes(rds["dapr-http"])]
    assert names[-3:] == ["invoke/unauthorized", "app-id/unauthorized", "capabilities"]


def test_app_api_token_is_added_by_the_inbound_route(config: MeshConfig) -> None:
    proxy = node(apps=[app("alpha", 0, app_api_token="for-alpha"), app("beta", 1)], app_api_token="node-app")
    rds = decoded(build(config, proxy)[proxy.id], "RDS")
    added = {
        name: routes(rds[name])[0]["requestHeadersToAdd"] for name in ("inbound|15006||", "inbound|15007||")
    }
    assert added["inbound|15006||"] == [
        {
            "header": {"key": "dapr-api-token", "value": "for-alpha"},
            "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD",  # replaces whatever a caller sent
        }
    ]
    assert added["inbound|15007||"][0]["header"]["value"] == "node-app"


def test_token_change_reaches_only_route_configs(config: MeshConfig) -> None:
    builder = SnapshotBuilder()
    before = node()
    after = replace(before, dapr_api_token="new")
    first = builder.build(config, [before])[before.id]
    second = builder.build(config, [after])[after.id]
    assert first.versions[types.ROUTE] != second.versions[types.ROUTE]
    assert first.versions[types.CLUSTER] == second.versions[types.CLUSTER]
