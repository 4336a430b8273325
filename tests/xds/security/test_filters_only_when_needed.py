"""The default `mecha up` data path carries no filter the config does not ask for (issue #17): with mTLS on
and no policy, every HTTP listener of a sidecar runs Envoy's router alone (plus fault/CORS on the outbound
listener, tests/xds/config/test_route_filters.py), no access log and no tracing; a RequestAuthentication or
an AuthorizationPolicy adds jwt_authn / RBAC to the inbound listener of the workloads it selects only."""

from __future__ import annotations

import itertools
from typing import Any

from conftest import config_of, decoded

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.demo.config import demo_config, make_layout
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity

_ports = itertools.count(31000)
LAYOUT = make_layout("sidecar", lambda _r, _i: next(_ports))
PROXIES = [ProxyIdentity.from_node(p.id, {"mecha": p.metadata()}) for p in LAYOUT.proxies]
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
OPTIONAL = {"envoy.filters.http.fault", "envoy.filters.http.cors"}


def hcms(snap: Any) -> dict[str, list[dict[str, Any]]]:
    """listener name -> the typed configs of its HCMs (one per filter chain)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, listener in decoded(snap, "LDS").items():
        for chain in listener.get("filterChains", []):
            for f in chain["filters"]:
                if f["name"] == HCM:
                    out.setdefault(name, []).append(f["typedConfig"])
    return out


def build(extra: str = "") -> dict[str, Any]:
    certs = WorkloadCertificates(CertificateAuthority())  # mTLS on, as `mecha up` by default
    return SnapshotBuilder(certs=certs).build(config_of(demo_config(LAYOUT) + extra), PROXIES)


def filters(config: dict[str, Any]) -> list[str]:
    return [f["name"] for f in config["httpFilters"]]


def test_default_mesh_with_mtls_has_the_router_only_and_no_access_log_or_tracing() -> None:
    snaps = build()
    for proxy_id, snap in snaps.items():
        for name, configs in hcms(snap).items():
            for config in configs:
                names = filters(config)
                assert names[-1] == ROUTER and set(names[:-1]) <= OPTIONAL, (proxy_id, name, names)
                if not name.startswith("0.0.0.0_"):  # only the outbound listener keeps fault/CORS
                    assert names == [ROUTER], (proxy_id, name, names)
                assert "accessLog" not in config and "tracing" not in config, (proxy_id, name)


def _doc(kind: str, spec: str) -> str:
    meta = "metadata: {name: x, namespace: default}"
    return f"---\napiVersion: security.istio.io/v1\nkind: {kind}\n{meta}\nspec: {spec}\n"


def _inbound_filters(snaps: dict[str, Any], proxy_id: str) -> list[list[str]]:
    return [
        filters(c)
        for name, cs in hcms(snaps[proxy_id]).items()
        if name.startswith("virtualInbound_")
        for c in cs
    ]


def test_request_authentication_adds_jwt_authn_to_the_selected_workload_only() -> None:
    jwks = '\'{"keys": [{"kty": "oct"}]}\''
    snaps = build(_doc("RequestAuthentication", f"{{selector: {{matchLabels: {{app: reviews}}}}, "
                                                f"jwtRules: [{{issuer: a, jwks: {jwks}}}]}}"))  # fmt: skip
    assert all("envoy.filters.http.jwt_authn" in f for f in _inbound_filters(snaps, "reviews-v1"))
    assert all(f == [ROUTER] for f in _inbound_filters(snaps, "productpage-v1"))


def test_authorization_policy_adds_rbac_to_the_selected_workload_only() -> None:
    rules = "rules: [{to: [{operation: {methods: [DELETE]}}]}]"
    deny = f"{{selector: {{matchLabels: {{app: reviews}}}}, action: DENY, {rules}}}"
    snaps = build(_doc("AuthorizationPolicy", deny))
    assert all("envoy.filters.http.rbac" in f for f in _inbound_filters(snaps, "reviews-v1"))
    assert all(f == [ROUTER] for f in _inbound_filters(snaps, "productpage-v1"))


def test_a_policy_selects_a_sidecar_labelled_at_proxy_level_only() -> None:
    """Istio selects a sidecar by its pod's labels; a bootstrap may carry them on the proxy, not on each app.
    The policy must not fail open for such a sidecar (its inbound listener had no RBAC, no JWT filter)."""
    rules = "rules: [{to: [{operation: {methods: [DELETE]}}]}]"
    deny = f"{{selector: {{matchLabels: {{app: reviews}}}}, action: DENY, {rules}}}"
    config = config_of(demo_config(LAYOUT) + _doc("AuthorizationPolicy", deny))
    reviews = next(p for p in LAYOUT.proxies if p.id == "reviews-v1")
    meta = reviews.metadata()
    labels = dict(meta["apps"][0]["labels"])
    meta = {**meta, "labels": labels, "apps": [{**a, "labels": {}} for a in meta["apps"]]}
    proxy = ProxyIdentity.from_node(reviews.id, {"mecha": meta})
    assert proxy.label_map == labels and all(not a.labels for a in proxy.apps)
    certs = WorkloadCertificates(CertificateAuthority())
    snaps = SnapshotBuilder(certs=certs).build(config, [proxy])
    inbound = _inbound_filters(snaps, reviews.id)
    assert inbound and all("envoy.filters.http.rbac" in f for f in inbound), inbound
