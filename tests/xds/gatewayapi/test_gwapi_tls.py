"""Phase 3 units: HTTPS listeners' certificateRefs (grants, kinds, missing Secrets), TLS/TCP listeners and
their routes' status, the CRD rules of TLSRoute/TCPRoute, the gateway translation of TLS passthrough, and
the credentials folder refusing names that leave it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from envoy_data_plane.envoy.config.listener import v3 as lis
from gwapi_helpers import compile_text, conditions, convert_text, services, status_of, svc

from xds import types
from xds.credential_files import CredentialStore
from xds.diagnostics import Severity
from xds.gatewayapi.convert import convert
from xds.gatewayapi.documents import read_documents
from xds.pipeline import SnapshotBuilder, load_text
from xds.proxy import ProxyIdentity


def gateway(*listeners: str) -> str:
    body = "".join(f"  - {ls}\n" for ls in listeners)
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: infra}}
spec:
  gatewayClassName: mecha
  listeners:
{body}---
"""


def https(name: str, ref: str, hostname: str = "") -> str:
    host = f", hostname: {hostname}" if hostname else ""
    return f"{{name: {name}, port: 443, protocol: HTTPS{host}, tls: {{certificateRefs: [{ref}]}}}}"


def grant(namespace: str, name: str = "", kind: str = "Gateway", source_ns: str = "infra") -> str:
    target = f", name: {name}" if name else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: g, namespace: {namespace}}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: {kind}, namespace: {source_ns}}}]
  to: [{{group: "", kind: Secret{target}}}]
---
"""


def listener(text: str, name: str) -> dict[str, tuple[str, str]]:
    conversion, _ = convert_text(text)
    found = status_of(conversion, "Gateway", "edge", "infra").listeners
    assert found is not None
    return conditions(next(ls for ls in found if ls.name == name).conditions)


def servers(text: str) -> list[dict[str, object]]:
    conversion, _ = convert_text(text)
    return [s for g in conversion.gateways for s in json.loads(g.spec_json)["servers"]]


def test_a_same_namespace_secret_is_the_credential_of_that_name() -> None:
    text = gateway(https("www", "{name: www-cert}", "www.example.com"))
    assert listener(text, "www")["ResolvedRefs"] == ("True", "ResolvedRefs")
    [server] = servers(text)
    assert server["tls"] == {"mode": "SIMPLE", "credentialName": "www-cert"}
    assert server["hosts"] == ["www.example.com"]


@pytest.mark.parametrize("granted", ["", "cert"])  # every Secret of the namespace, or that one
def test_a_granted_secret_of_another_namespace_is_ns_slash_name(granted: str) -> None:
    text = gateway(https("www", "{name: cert, namespace: certs}")) + grant("certs", granted)
    assert listener(text, "www")["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert servers(text)[0]["tls"] == {"mode": "SIMPLE", "credentialName": "certs/cert"}


@pytest.mark.parametrize(
    "wrong_grant",
    [
        grant("infra", "cert"),  # in the Gateway's namespace, not the Secret's
        grant("certs", "other"),  # another Secret
        grant("certs", "cert", kind="HTTPRoute"),  # for routes, not Gateways
        grant("certs", "cert", source_ns="elsewhere"),  # for Gateways of another namespace
    ],
)
def test_a_secret_of_another_namespace_without_its_grant_is_not_permitted(wrong_grant: str) -> None:
    text = gateway(https("www", "{name: cert, namespace: certs}")) + wrong_grant
    got = listener(text, "www")
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert got["Accepted"] == ("True", "Accepted") and got["Programmed"] == ("False", "Invalid")
    assert servers(text) == []  # never served


@pytest.mark.parametrize(
    "ref",
    ["{name: c, kind: ConfigMap}", "{name: c, group: example.com, kind: Secret}", "{name: c, group: v1}"],
)
def test_an_unsupported_certificate_ref_kind_is_invalid(ref: str) -> None:
    got = listener(gateway(https("www", ref)), "www")
    assert got["ResolvedRefs"] == ("False", "InvalidCertificateRef")


def test_a_missing_secret_is_invalid_once_the_credentials_are_known() -> None:
    text = gateway(https("a", "{name: here}", "a.example.com"), https("b", "{name: gone}", "b.example.com"))
    docs, _ = load_text(text, "gw.yaml")
    inputs, _ = read_documents(docs)
    status = status_of(convert(inputs, {}, available={"here"}), "Gateway", "edge", "infra")
    assert status.listeners is not None
    by_name = {ls.name: conditions(ls.conditions) for ls in status.listeners}
    assert by_name["a"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert by_name["b"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert by_name["b"]["Programmed"] == ("False", "Invalid")


def test_tls_terminate_is_not_served_and_passthrough_is() -> None:
    text = gateway(
        "{name: term, port: 9443, protocol: TLS, tls: {mode: Terminate, certificateRefs: [{name: c}]}}",
        "{name: pass, port: 8443, protocol: TLS, tls: {mode: Passthrough}}",
    )
    assert listener(text, "term")["Accepted"] == ("False", "UnsupportedValue")
    assert listener(text, "pass")["Accepted"] == ("True", "Accepted")
    assert [s["tls"] for s in servers(text)] == [{"mode": "PASSTHROUGH"}]


def _tls_route(name: str, hostnames: str, section: str = "pass") -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: {name}, namespace: infra}}
spec:
  parentRefs: [{{name: edge, sectionName: {section}}}]
  hostnames: {hostnames}
  rules: [{{backendRefs: [{{name: app, port: 8443}}]}}]
---
"""


def test_tls_route_hostnames_intersect_the_listener_s() -> None:
    text = gateway(
        "{name: pass, port: 8443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}"
    )
    text += _tls_route("in", "[a.example.com, a.example.org]") + _tls_route("out", "[a.example.org]")
    conversion, _ = convert_text(text, services(svc("app", "infra"), port=8443))
    accepted = status_of(conversion, "TLSRoute", "in", "infra").parents
    assert accepted is not None and conditions(accepted[0].conditions)["Accepted"] == ("True", "Accepted")
    out = status_of(conversion, "TLSRoute", "out", "infra").parents
    assert out is not None and conditions(out[0].conditions)["Accepted"] == (
        "False",
        "NoMatchingListenerHostname",
    )
    [vs] = conversion.virtual_services
    assert [m.sni_hosts for r in vs.tls for m in r.matches] == [("a.example.com",)]


def test_tcp_and_tls_routes_attach_only_to_their_listener_protocol() -> None:
    text = gateway("{name: http, port: 80, protocol: HTTP}", "{name: tcp, port: 5432, protocol: TCP}")
    text += _tls_route("tls-on-http", "[a.example.com]", "http")
    text += """apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
"""
    conversion, _ = convert_text(text, services(svc("db", "infra"), port=5432))
    tls = status_of(conversion, "TLSRoute", "tls-on-http", "infra").parents
    assert tls is not None and conditions(tls[0].conditions)["Accepted"] == ("False", "NotAllowedByListeners")
    db = status_of(conversion, "TCPRoute", "db", "infra").parents
    assert db is not None and conditions(db[0].conditions)["Accepted"] == ("True", "Accepted")
    listeners = status_of(conversion, "Gateway", "edge", "infra").listeners
    assert listeners is not None and [ls.attached_routes for ls in listeners] == [0, 1]


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ("kind: TCPRoute\nspec: {parentRefs: [{name: edge}]}", "spec.rules", "required field is missing"),
        (
            "kind: TLSRoute\nspec: {rules: [{backendRefs: []}]}",
            "spec.rules[0].backendRefs",
            "required field is missing",
        ),
        (
            "kind: TCPRoute\nspec: {rules: [{backendRefs: [{name: db}]}]}",
            "spec.rules[0].backendRefs[0].port",
            "port",
        ),
        (
            "kind: Gateway\nspec: {gatewayClassName: mecha, listeners: [{name: a, port: 443, protocol: HTTPS,"
            " tls: {mode: Terminate}}]}",
            "spec.listeners[0].tls",
            "certificateRefs or options must be specified when mode is Terminate",
        ),
    ],
)
def test_invalid_tls_and_tcp_documents_are_refused(doc: str, field: str, message: str) -> None:
    version = "v1" if doc.startswith("kind: Gateway") else "v1alpha2"
    result = compile_text(f"apiVersion: gateway.networking.k8s.io/{version}\n{doc}\nmetadata: {{name: r}}\n")
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert any(d.field == field and message in d.message for d in errors), [str(d) for d in errors]


def test_passthrough_translation_first_route_of_a_name_wins_and_no_backend_closes(tmp_path: Path) -> None:
    text = gateway("{name: pass, port: 8443, protocol: TLS, tls: {mode: Passthrough}}")
    text += _tls_route("a-first", "[x.example.com]") + _tls_route(
        "b-second", "[x.example.com, y.example.com]"
    )
    text += _tls_route("c-broken", "[z.example.com]").replace("name: app", "name: missing")
    text += """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: infra}
spec:
  hosts: [app.infra.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8443, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.9}]
"""
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in result.errors]
    meta = {"mode": "gateway", "namespace": "infra", "gateways": ["infra/edge"]}
    proxy = ProxyIdentity.from_node("gw", {"mecha": meta})
    snap = SnapshotBuilder(credentials=CredentialStore(tmp_path)).build(result.config, [proxy])["gw"]
    [raw] = snap.of(types.LISTENER).values()
    found = lis.Listener.parse(raw.body)
    chains = [(list(c.filter_chain_match.server_names), c.filters[-1].name) for c in found.filter_chains]
    assert chains == [
        (["x.example.com"], "envoy.filters.network.tcp_proxy"),
        (["y.example.com"], "envoy.filters.network.tcp_proxy"),
        (["z.example.com"], "envoy.filters.network.direct_response"),
    ]


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", "a/b/c", "a/..", "..", "a\\..\\x", ""])
def test_the_credentials_folder_refuses_names_that_leave_it(tmp_path: Path, name: str) -> None:
    """Attacker: a certificateRef namespace/name or credentialName may not read outside the folder."""
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "tls.crt").write_text("CERT")
    (outside / "tls.key").write_text("KEY")
    folder = tmp_path / "credentials"
    (folder / "a").mkdir(parents=True)
    assert CredentialStore(folder).get(name) is None


def test_the_credentials_folder_reads_ns_slash_name(tmp_path: Path) -> None:
    where = tmp_path / "certs" / "api"
    where.mkdir(parents=True)
    (where / "tls.crt").write_text("CERT")
    (where / "tls.key").write_text("KEY")
    found = CredentialStore(tmp_path).get("certs/api")
    assert found is not None and found.certificate.name == "kubernetes://certs/api"
