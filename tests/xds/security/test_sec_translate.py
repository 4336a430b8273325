"""Translation of the security kinds and Gateways into per-proxy Envoy resources (no Envoy needed)."""

from __future__ import annotations

import itertools

from conftest import config_of, decoded
from demo_registration import demo_proxies, with_registered_entries

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.demo.config import demo_config, make_layout
from xds.model.security import security_policies
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity
from xds.translate.security.jwt import jwt_authentication, jwt_rules_for
from xds.translate.security.mtls import peer_mode

_ports = itertools.count(30000)
LAYOUT = make_layout("sidecar", lambda _r, _i: next(_ports))
PROXIES = demo_proxies(LAYOUT)
# the sidecars register through WorkloadGroups at runtime: add the entries they would write
DEMO = with_registered_entries(demo_config(LAYOUT), LAYOUT)
REVIEWS_PORT = LAYOUT.workload("reviews-v1").inbound_port


def doc(kind: str, name: str, ns: str, spec: str, group: str = "security.istio.io/v1") -> str:
    return (
        f"---\napiVersion: {group}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )


def peer(name: str, ns: str, spec: str) -> str:
    return doc("PeerAuthentication", name, ns, spec)


def build(extra: str = "", mtls: bool = True) -> dict:  # type: ignore[type-arg]
    config = config_of(DEMO + extra)
    certs = WorkloadCertificates(CertificateAuthority()) if mtls else None
    return SnapshotBuilder(certs=certs).build(config, PROXIES)


def inbound(snaps: dict, proxy: str = "reviews-v1") -> dict:  # type: ignore[type-arg]
    return decoded(snaps[proxy], "LDS")[f"virtualInbound_{REVIEWS_PORT if proxy == 'reviews-v1' else 0}"]


def test_peer_mode_precedence_mesh_namespace_workload_port() -> None:
    text = (
        peer("mesh", "istio-system", "{mtls: {mode: STRICT}}")
        + peer("ns", "default", "{mtls: {mode: PERMISSIVE}}")
        + peer(
            "wl",
            "default",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}, "
            "portLevelMtls: {9999: {mode: DISABLE}}}",
        )
    )
    pol = security_policies(config_of(text).carried)
    assert peer_mode(pol, "default", {"app": "reviews"}, 1) == "PERMISSIVE"  # workload UNSET inherits ns
    assert peer_mode(pol, "default", {"app": "reviews"}, 9999) == "DISABLE"
    assert peer_mode(pol, "other", {"app": "x"}, 1) == "STRICT"  # mesh-wide
    assert peer_mode(security_policies(()), "default", {}, 1) == "PERMISSIVE"  # Istio's default


def test_strict_permissive_disable_inbound_chains() -> None:
    strict = inbound(build(peer("m", "istio-system", "{mtls: {mode: STRICT}}")))
    assert len(strict["filterChains"]) == 1 and "transportSocket" in strict["filterChains"][0]
    tls = strict["filterChains"][0]["transportSocket"]["typedConfig"]
    assert tls["requireClientCertificate"] is True
    assert tls["commonTlsContext"]["tlsCertificateSdsSecretConfigs"][0]["name"] == "default"
    permissive = inbound(build())
    protocols = [c.get("filterChainMatch", {}).get("transportProtocol") for c in permissive["filterChains"]]
    assert protocols == ["tls", "raw_buffer"]
    assert permissive["listenerFilters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    disabled = inbound(build(peer("m", "istio-system", "{mtls: {mode: DISABLE}}")))
    assert [("transportSocket" in c) for c in disabled["filterChains"]] == [False]


def test_auto_mtls_clusters_and_secrets() -> None:
    snaps = build()
    clusters = decoded(snaps["productpage-v1"], "CDS")
    sock = clusters["outbound|9080|v2|reviews.default.svc.cluster.local"]["transportSocket"]["typedConfig"]
    assert sock["sni"] == "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
    sans = sock["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]
    assert (
        sans["matchTypedSubjectAltNames"][0]["matcher"]["exact"]
        == "spiffe://cluster.local/ns/default/sa/reviews"
    )
    assert sorted(
        snaps["productpage-v1"].of("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret")
    ) == [
        "ROOTCA",
        "default",
    ]
    # a DISABLE destination gets plaintext from its clients
    snaps = build(peer("r", "default", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}"))
    clusters = decoded(snaps["productpage-v1"], "CDS")
    assert "transportSocket" not in clusters["outbound|9080||ratings.default.svc.cluster.local"]
    assert "transportSocket" in clusters["outbound|9080||reviews.default.svc.cluster.local"]


def test_without_ca_or_policies_nothing_changes() -> None:
    plain = build(mtls=False)
    snap = plain["reviews-v1"]
    assert not snap.of("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret")
    listener = decoded(snap, "LDS")[f"virtualInbound_{REVIEWS_PORT}"]
    assert "transportSocket" not in listener["filterChains"][0]
    assert all("transportSocket" not in c for c in decoded(snap, "CDS").values())


def test_rbac_and_jwt_filters_are_ordered_before_the_router() -> None:
    jwks = '\'{"keys": [{"kty": "oct"}]}\''
    rules = f"[{{issuer: z, jwks: {jwks}}}, {{issuer: a, jwks: {jwks}}}]"
    extra = doc(
        "RequestAuthentication",
        "j",
        "default",
        f"{{selector: {{matchLabels: {{app: reviews}}}}, jwtRules: {rules}}}",
    )
    extra += doc(
        "AuthorizationPolicy",
        "d",
        "default",
        "{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}",
    )
    listener = inbound(build(extra, mtls=False))
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    names = [f["name"] for f in hcm["httpFilters"]]
    assert names == [
        "envoy.filters.http.jwt_authn",
        "istio_authn",
        "envoy.filters.http.rbac",
        "envoy.filters.http.router",
    ]
    pol = security_policies(config_of(DEMO + extra).carried)
    auth = jwt_authentication(jwt_rules_for(pol, "default", {"app": "reviews"}))
    assert {n: p.issuer for n, p in auth.providers.items()} == {"origins-0": "a", "origins-1": "z"}


def test_gateway_blackhole_and_redirect() -> None:
    gw = ProxyIdentity.from_node(
        "gw",
        {
            "mecha": {
                "mode": "gateway",
                "gateways": ["default/g"],
                "gateway_ports": {"80": 18080, "81": 18081},
            }
        },
    )
    net = "networking.istio.io/v1"
    servers = (
        "{servers: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ['*']},"
        " {port: {number: 81, protocol: HTTP, name: r}, hosts: ['*'], tls: {httpsRedirect: true}}]}"
    )
    routes = "[{match: [{port: 81}], route: [{destination: {host: reviews}}]}]"
    text = DEMO + doc("Gateway", "g", "default", servers, net)
    text += doc(
        "VirtualService", "v", "default", f"{{hosts: [shop.example.com], gateways: [g], http: {routes}}}", net
    )
    snap = SnapshotBuilder().build(config_of(text), [gw])["gw"]
    assert sorted(decoded(snap, "LDS")) == ["0.0.0.0_18080", "0.0.0.0_18081"]
    routes = decoded(snap, "RDS")
    redirect = routes["http.18081"]["virtualHosts"][0]
    assert redirect["name"] == "shop.example.com:81" and redirect["requireTls"] == "ALL"
    blackhole = routes["http.18080"]["virtualHosts"][0]  # the VS only routes port 81
    assert blackhole["name"] in ("blackhole:80", "shop.example.com:80")
