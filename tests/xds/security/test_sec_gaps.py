"""DestinationRule tls, service accounts, the persisted CA root, TCP authorization, Gateway `./host`,
in-mesh / fetched JWKS and dry-run AuthorizationPolicies (translation and validation; no Envoy needed)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from conftest import compile_text, config_of, decoded
from demo_registration import demo_proxies, with_registered_entries

from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.ca.authority import ROOT_KEY_FILE
from xds.demo.config import demo_config, demo_documents, make_layout
from xds.model.schema import field_table
from xds.model.security import AuthzRule, Operation, Source, security_policies
from xds.model.specs import SPEC_BY_KIND
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity
from xds.translate.security.mtls import proxy_spiffe_ids
from xds.translate.security.rbac import rbac_configs, tcp_rule
from xds.translate.security.upstream import system_ca_bundle

_ports = itertools.count(31000)
LAYOUT = make_layout("sidecar", lambda _r, _i: next(_ports))
PROXIES = demo_proxies(LAYOUT)
# the sidecars register through WorkloadGroups at runtime: add the entries they would write
DEMO = with_registered_entries(demo_config(LAYOUT), LAYOUT)
NET = "networking.istio.io/v1"
SEC = "security.istio.io/v1"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"


def doc(kind: str, name: str, spec: str, group: str = NET, ns: str = "default", annotations: str = "") -> str:
    extra = f", annotations: {annotations}" if annotations else ""
    meta = f"{{name: {name}, namespace: {ns}{extra}}}"
    return f"---\napiVersion: {group}\nkind: {kind}\nmetadata: {meta}\nspec: {spec}\n"


def build(extra: str = "", mtls: bool = True, proxies: list[ProxyIdentity] | None = None) -> dict[str, Any]:
    config = config_of(DEMO + extra)
    certs = WorkloadCertificates(CertificateAuthority()) if mtls else None
    return SnapshotBuilder(certs=certs).build(config, proxies or PROXIES)


def cluster_tls(extra: str, name: str = RATINGS, mtls: bool = True) -> dict[str, Any] | None:
    cluster = decoded(build(extra, mtls)["productpage-v1"], "CDS")[name]
    sock = cluster.get("transportSocket")
    return sock["typedConfig"] if sock else None


def ratings_dr(spec: str) -> str:
    return doc("DestinationRule", "ratings", f"{{host: ratings, {spec}}}")


# ---- 1. DestinationRule trafficPolicy.tls ----------------------------------------------------------------


def test_disable_overrides_auto_mtls_and_istio_mutual_uses_the_mesh_context() -> None:
    assert cluster_tls("") is not None  # auto-mTLS: every ratings endpoint is a mesh proxy
    assert cluster_tls(ratings_dr("trafficPolicy: {tls: {mode: DISABLE}}")) is None
    ctx = cluster_tls(ratings_dr("trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}"))
    assert ctx is not None
    assert ctx["sni"] == "outbound_.9080_._.ratings.default.svc.cluster.local"
    common = ctx["commonTlsContext"]
    assert common["alpnProtocols"] == ["istio-peer-exchange", "istio"]
    assert common["tlsCertificateSdsSecretConfigs"][0]["name"] == "default"
    combined = common["combinedValidationContext"]
    assert combined["validationContextSdsSecretConfig"]["name"] == "ROOTCA"
    sans = [m["matcher"]["exact"] for m in combined["defaultValidationContext"]["matchTypedSubjectAltNames"]]
    assert sans == ["spiffe://cluster.local/ns/default/sa/ratings"]


def test_simple_with_ca_file_system_roots_or_no_verification(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused by the translator")
    spec = f"trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {ca}, subjectAltNames: [api.test]}}}}"
    ctx = cluster_tls(ratings_dr(spec), mtls=False)  # no CA needed for SIMPLE
    assert ctx is not None
    assert ctx["sni"] == "ratings.default.svc.cluster.local"  # the host when sni is unset
    validation = ctx["commonTlsContext"]["validationContext"]
    assert validation["trustedCa"]["filename"] == str(ca)
    assert {(m["sanType"], m["matcher"]["exact"]) for m in validation["matchTypedSubjectAltNames"]} == {
        ("DNS", "api.test"),
        ("URI", "api.test"),
    }
    system = cluster_tls(ratings_dr("trafficPolicy: {tls: {mode: SIMPLE, sni: a.b}}"), mtls=False)
    assert system is not None and system["sni"] == "a.b"
    system_ca = system["commonTlsContext"]["validationContext"]["trustedCa"]["filename"]
    assert system_ca == system_ca_bundle() and Path(system_ca).is_file()  # never "verify nothing"
    skip = cluster_tls(ratings_dr("trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}"))
    assert skip is not None and "validationContext" not in skip.get("commonTlsContext", {})


def test_mutual_files_and_subset_and_port_precedence(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    mutual = f"{{mode: MUTUAL, clientCertificate: {tmp_path / 'c.pem'}, privateKey: {tmp_path / 'k.pem'}}}"
    spec = (
        "trafficPolicy: {tls: {mode: DISABLE},"
        " portLevelSettings: [{port: {number: 9080}, tls: {mode: SIMPLE}}]},"
        f" subsets: [{{name: v1, labels: {{version: v1}}, trafficPolicy: {{tls: {mutual}}}}}]"
    )
    base = cluster_tls(ratings_dr(spec))  # DR port level beats the DR's DISABLE
    assert base is not None and "tlsCertificates" not in base["commonTlsContext"]
    sub = cluster_tls(ratings_dr(spec), "outbound|9080|v1|ratings.default.svc.cluster.local")
    assert sub is not None  # the subset's MUTUAL beats the DR (and its port level)
    cert = sub["commonTlsContext"]["tlsCertificates"][0]
    assert cert["certificateChain"]["filename"] == str(tmp_path / "c.pem")


def test_bad_tls_settings_are_refused_naming_the_field(tmp_path: Path) -> None:
    bad = ratings_dr(
        f"trafficPolicy: {{tls: {{mode: MUTUAL, caCertificates: {tmp_path / 'missing.pem'}}}}}, "
        "subsets: [{name: v1, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, privateKey: /k.pem}}}]"
    )
    result = compile_text(DEMO + bad, "dr.yaml")
    assert not result.ok
    fields = {(d.field, d.code) for d in result.errors}
    assert ("spec.trafficPolicy.tls.clientCertificate", "required") in fields
    assert ("spec.trafficPolicy.tls.caCertificates", "io") in fields
    assert ("spec.subsets[0].trafficPolicy.tls.privateKey", "conflict") in fields
    unknown = compile_text(DEMO + ratings_dr("trafficPolicy: {tls: {mode: SIMPLE, bogus: 1}}"))
    assert ("spec.trafficPolicy.tls.bogus", "unknown-field") in {(d.field, d.code) for d in unknown.errors}


# ---- 2. service accounts -----------------------------------------------------------------------------------


def _with_service_account(sa: str, workload: str = "ratings-v1") -> str:
    """The demo whose `workload` group names `sa`: the entry its sidecar registers carries it."""
    docs = demo_documents(LAYOUT)
    (group,) = [d for d in docs if d["kind"] == "WorkloadGroup" and d["metadata"]["name"] == workload]
    group["spec"]["template"]["serviceAccount"] = sa
    text = with_registered_entries(yaml.safe_dump_all(docs, sort_keys=False), LAYOUT)
    assert f"kind: WorkloadEntry\nmetadata:\n  name: {workload}-{workload}\n" in text
    return text


def test_workload_entry_service_account_is_the_identity_and_the_san() -> None:
    config = config_of(_with_service_account("bookinfo-ratings"))
    ratings = next(p for p in PROXIES if p.id == "ratings-v1")
    assert proxy_spiffe_ids(ratings, config, "cluster.local") == (
        "spiffe://cluster.local/ns/default/sa/bookinfo-ratings",
    )
    snaps = SnapshotBuilder(certs=WorkloadCertificates(CertificateAuthority())).build(config, PROXIES)
    sock = decoded(snaps["productpage-v1"], "CDS")[RATINGS]["transportSocket"]["typedConfig"]
    matchers = sock["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]
    assert [m["matcher"]["exact"] for m in matchers["matchTypedSubjectAltNames"]] == [
        "spiffe://cluster.local/ns/default/sa/bookinfo-ratings"
    ]


def test_service_entry_endpoint_service_account_and_subject_alt_names() -> None:
    se = doc(
        "ServiceEntry",
        "ext",
        "{hosts: [ext.mesh.test], location: MESH_INTERNAL, resolution: STATIC,"
        " ports: [{number: 80, name: http}],"
        " subjectAltNames: ['spiffe://other.td/ns/x/sa/y'],"
        " endpoints: [{address: 127.0.0.1, serviceAccount: ext-sa, labels: {app: ext}}]}",
    )
    dr = doc("DestinationRule", "ext", "{host: ext.mesh.test, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}")
    ctx = cluster_tls(se + dr, "outbound|80||ext.mesh.test")
    assert ctx is not None
    matchers = ctx["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]
    assert sorted(m["matcher"]["exact"] for m in matchers["matchTypedSubjectAltNames"]) == [
        "spiffe://cluster.local/ns/default/sa/ext-sa",
        "spiffe://other.td/ns/x/sa/y",
    ]


def test_the_field_tables_say_these_fields_are_honoured() -> None:
    status = {
        (kind, path): declared.status
        for kind, spec in SPEC_BY_KIND.items()
        for path, declared in field_table(spec, "spec")
    }
    for key in (
        ("WorkloadEntry", "spec.serviceAccount"),
        ("ServiceEntry", "spec.endpoints[].serviceAccount"),
        ("ServiceEntry", "spec.subjectAltNames"),
        ("DestinationRule", "spec.trafficPolicy.tls.mode"),
        ("DestinationRule", "spec.subsets[].trafficPolicy.tls.caCertificates"),
        ("DestinationRule", "spec.trafficPolicy.portLevelSettings[].tls.insecureSkipVerify"),
    ):
        assert status[key] == "honoured", key
    assert status[("DestinationRule", "spec.trafficPolicy.tls.credentialName")] == "unsupported"


# ---- 3. the CA root persists -------------------------------------------------------------------------------


def test_ca_root_is_created_once_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    first = CertificateAuthority.load_or_create(folder, "cluster.local")
    assert stat.S_IMODE(os.stat(folder / ROOT_KEY_FILE).st_mode) == 0o600
    again = CertificateAuthority.load_or_create(folder, "cluster.local")
    assert again.root_pem == first.root_pem
    leaf = again.issue(("spiffe://cluster.local/ns/default/sa/a",), __import__("datetime").timedelta(hours=1))
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    cert.verify_directly_issued_by(first.root)  # raises when the restarted CA is not the same root
    with pytest.raises(ValueError, match=r"trust domain 'cluster\.local', not 'other\.td'"):
        CertificateAuthority.load_or_create(folder, "other.td")
    (folder / ROOT_KEY_FILE).write_text("garbage")
    with pytest.raises(ValueError, match=f"CA directory {folder}"):
        CertificateAuthority.load_or_create(folder, "cluster.local")


# ---- 4. TCP authorization ---------------------------------------------------------------------------------


def test_tcp_rules_drop_or_strip_http_only_fields() -> None:
    http_rule = AuthzRule(
        sources=(Source(principals=("a",), request_principals=("iss/sub",)),),
        operations=(Operation(ports=("9000",), paths=("/x",)),),
    )
    assert tcp_rule(http_rule, "ALLOW") is None  # a narrower allow
    kept = tcp_rule(http_rule, "DENY")  # a wider deny
    assert kept is not None
    assert kept.sources[0].principals == ("a",) and not kept.sources[0].request_principals
    assert kept.operations[0].ports == ("9000",) and not kept.operations[0].paths
    plain = AuthzRule(operations=(Operation(ports=("9000",)),))
    assert tcp_rule(plain, "ALLOW") is plain


GATEWAY_PROXY = ProxyIdentity.from_node(
    "gw",
    {
        "mecha": {
            "mode": "gateway",
            "namespace": "default",
            "labels": {"istio": "ingress"},
            "gateways": ["default/g"],
            "gateway_ports": {"80": 18080, "9000": 19000},
        }
    },
)


def _gateway_text(servers: str, vs: str, policies: str = "") -> str:
    return DEMO + doc("Gateway", "g", f"{{servers: {servers}}}") + vs + policies


def test_tcp_gateway_chain_gets_network_rbac_before_tcp_proxy() -> None:
    servers = "[{port: {number: 9000, protocol: TCP, name: tcp}, hosts: ['*']}]"
    vs = doc(
        "VirtualService",
        "t",
        "{hosts: ['*'], gateways: [g],"
        " tcp: [{route: [{destination: {host: ratings, port: {number: 9080}}}]}]}",
    )
    policies = doc(
        "AuthorizationPolicy",
        "tcp-allow",
        "{selector: {matchLabels: {istio: ingress}}, rules: [{to: [{operation: {ports: ['9000']}}]},"
        " {to: [{operation: {methods: [GET]}}]}]}",
        SEC,
    )
    builder = SnapshotBuilder()
    snap = builder.build(config_of(_gateway_text(servers, vs, policies)), [GATEWAY_PROXY])["gw"]
    chain = decoded(snap, "LDS")["0.0.0.0_19000"]["filterChains"][0]
    assert [f["name"] for f in chain["filters"]] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    cfg = chain["filters"][0]["typedConfig"]
    assert cfg["statPrefix"] == "tcp."
    assert sorted(cfg["rules"]["policies"]) == [
        "ns[default]-policy[tcp-allow]-rule[0]"
    ]  # rule 1 is HTTP-only
    assert any(w.code == "tcp-rbac" and w.field == "spec.rules[1]" for w in builder.warnings)


def test_http_gateway_gets_rbac_and_dot_host_binds_only_its_namespace() -> None:
    hosts = "['./same.test', '*/any.test', './other.test']"
    servers = f"[{{port: {{number: 80, protocol: HTTP, name: http}}, hosts: {hosts}}}]"
    routes = "[{route: [{destination: {host: ratings.default.svc.cluster.local}}]}]"
    vs = doc("VirtualService", "same", f"{{hosts: [same.test], gateways: [default/g], http: {routes}}}")
    vs += doc(
        "VirtualService",
        "other",
        f"{{hosts: [any.test, other.test], gateways: [default/g], http: {routes}}}",
        ns="other",
    )
    policy = doc(
        "AuthorizationPolicy",
        "deny",
        "{selector: {matchLabels: {istio: ingress}}, action: DENY, rules: [{}]}",
        SEC,
    )
    snap = SnapshotBuilder().build(config_of(_gateway_text(servers, vs, policy)), [GATEWAY_PROXY])["gw"]
    vhosts = {v["name"]: v for v in decoded(snap, "RDS")["http.18080"]["virtualHosts"]}
    # ./ = the Gateway's namespace (default): the VS of namespace `other` may not bind other.test
    assert sorted(vhosts) == ["any.test:80", "same.test:80"]
    hcm = decoded(snap, "LDS")["0.0.0.0_18080"]["filterChains"][0]["filters"][0]["typedConfig"]
    assert [f["name"] for f in hcm["httpFilters"]] == ["envoy.filters.http.rbac", "envoy.filters.http.router"]


# ---- 5. JWKS: in-mesh remote_jwks, fetched by the control plane ------------------------------------------

JWKS = json.dumps({"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]})


async def _jwks(_request: web.Request) -> web.Response:
    return web.Response(text=JWKS, content_type="application/json")


async def _broken(_request: web.Request) -> web.Response:
    return web.Response(status=500)


@pytest.fixture
def jwks_server() -> Iterator[str]:
    """A real HTTP server (own loop in a thread) serving /jwks.json and a 500 at /broken."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/jwks.json", _jwks)
        app.router.add_get("/broken", _broken)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        started.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _authn(uri: str) -> str:
    return doc(
        "RequestAuthentication",
        "ra",
        f"{{selector: {{matchLabels: {{app: reviews}}}}, jwtRules: [{{issuer: iss, jwksUri: '{uri}'}}]}}",
        SEC,
    )


def _jwt_provider(extra: str) -> dict[str, Any]:
    listener = decoded(build(extra, mtls=False)["reviews-v1"], "LDS")
    inbound = next(v for k, v in listener.items() if k.startswith("virtualInbound_"))
    hcm = inbound["filterChains"][0]["filters"][0]["typedConfig"]
    jwt = next(f for f in hcm["httpFilters"] if f["name"] == "envoy.filters.http.jwt_authn")
    return jwt["typedConfig"]["providers"]["origins-0"]


def test_jwks_uri_of_a_mesh_service_is_fetched_by_the_proxy_through_its_cluster() -> None:
    provider = _jwt_provider(_authn("http://ratings:9080/jwks.json"))
    assert "localJwks" not in provider
    http_uri = provider["remoteJwks"]["httpUri"]
    assert http_uri["cluster"] == RATINGS and http_uri["uri"] == "http://ratings:9080/jwks.json"
    assert provider["remoteJwks"]["cacheDuration"] == "300s"


def test_other_jwks_uris_are_fetched_at_apply_time_and_inlined(jwks_server: str) -> None:
    provider = _jwt_provider(_authn(f"{jwks_server}/jwks.json"))
    assert json.loads(provider["localJwks"]["inlineString"]) == json.loads(JWKS)
    result = compile_text(DEMO + _authn(f"{jwks_server}/broken"), "ra.yaml")
    assert not result.ok
    (err,) = [d for d in result.errors if d.field == "spec.jwtRules[0].jwksUri"]
    assert "cannot fetch the JWKS" in err.message and "HTTP 500" in err.message
    assert err.location.file == "ra.yaml"


# ---- 6. dry-run --------------------------------------------------------------------------------------------


def test_dry_run_policies_become_shadow_rules() -> None:
    annotated = "{istio.io/dry-run: 'true'}"
    text = DEMO + doc("AuthorizationPolicy", "d", "{action: DENY, rules: [{}]}", SEC, annotations=annotated)
    text += doc("AuthorizationPolicy", "a", "{rules: [{}]}", SEC)
    policies = list(security_policies(config_of(text).carried).authz)
    assert [p.dry_run for p in policies] == [False, True]
    deny, allow = rbac_configs(policies)
    assert deny.rules is None and deny.shadow_rules is not None  # evaluated, never enforced
    assert list(deny.shadow_rules.policies) == ["ns[default]-policy[d]-rule[0]"]
    assert deny.shadow_rules_stat_prefix == "istio_dry_run_deny_"
    assert allow.rules is not None and allow.shadow_rules is None
    assert allow.shadow_rules_stat_prefix == "istio_dry_run_allow_"
