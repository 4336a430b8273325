"""Bad security / Gateway input: errors name the file, the resource and the field; the config is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compile_text

PA = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: default}\n"
AP = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: default}\n"
RA = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: default}"
RA += "\n"
GW = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\n"

CASES = [
    (PA + "spec: {mtls: {mode: STRICTLY}}", "spec.mtls.mode", "STRICTLY"),
    (PA + "spec: {portLevelMtls: {8080: {mode: DISABLE}}}", "spec.portLevelMtls", "selector"),
    (
        PA + "spec: {selector: {matchLabels: {a: b}}, portLevelMtls: {99999: {mode: DISABLE}}}",
        "99999",
        "port",
    ),
    (AP + "spec: {action: CUSTOM, provider: {name: x}}", "spec.action", "CUSTOM"),
    (AP + "spec: {rules: [{from: [{source: {ipBlocks: [nope]}}]}]}", "ipBlocks[0]", "CIDR"),
    (AP + "spec: {rules: [{to: [{operation: {ports: ['http']}}]}]}", "ports[0]", "port"),
    (AP + "spec: {rules: [{when: [{key: request.color, values: [red]}]}]}", "when[0].key", "not supported"),
    (AP + "spec: {rules: [{when: [{key: 'request.headers[x]'}]}]}", "spec.rules[0].when[0]", "values"),
    (AP + "spec: {rules: [{to: [{operation: {paths: ['/a/{*}']}}]}]}", "paths[0]", "template"),
    (AP + "spec: {rules: [{from: [{source: {serviceAccounts: [a]}}]}]}", "serviceAccounts", "principals"),
    (AP + "spec: {rules: [{frm: []}]}", "spec.rules[0].frm", "unknown field"),
    (RA + "spec: {jwtRules: [{jwks: '{}'}]}", "jwtRules[0].issuer", "required"),
    (RA + "spec: {jwtRules: [{issuer: a, jwks: 'not json'}]}", "jwtRules[0].jwks", "JSON"),
    (RA + "spec: {jwtRules: [{issuer: a, jwksUri: 'https://x.invalid/jwks'}]}", "jwksUri", "cannot fetch"),
    (RA + "spec: {jwtRules: [{issuer: a, jwksUri: 'file:///no/such/jwks.json'}]}", "jwksUri", "cannot read"),
    (RA + "spec: {jwtRules: [{issuer: a}]}", "jwtRules[0]", "jwks"),
    (GW + "spec: {servers: []}", "spec.servers", "required"),
    (GW + "spec: {servers: [{port: {number: 1, protocol: TLS}, hosts: ['*']}]}", "protocol", "TLS"),
    (GW + "spec: {servers: [{port: {number: 443, protocol: HTTPS}, hosts: ['*']}]}", "tls.mode", "SIMPLE"),
    (
        GW + "spec: {servers: [{port: {number: 443, protocol: HTTPS}, hosts: ['*'], "
        "tls: {mode: SIMPLE, serverCertificate: /no/cert.pem, privateKey: /no/key.pem}}]}",
        "tls.serverCertificate",
        "not readable",
    ),
    (
        GW + "spec: {servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}, "
        "{port: {number: 80, protocol: TCP}, hosts: ['*']}]}",
        "spec.servers[1].port",
        "already",
    ),
]


@pytest.mark.parametrize(("text", "field", "words"), CASES)
def test_bad_input_is_refused_naming_file_resource_field(text: str, field: str, words: str) -> None:
    result = compile_text(text, "policies.yaml")
    assert not result.ok and result.config is None  # refused: no proxy gets any part of it
    matching = [d for d in result.errors if field in d.field]
    assert matching, [str(d) for d in result.errors]
    line = str(matching[0])
    assert "policies.yaml" in line and "default/" in line and words in line, line


def test_good_policies_compile_clean(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}')
    text = "\n---\n".join(
        [
            PA + "spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}, "
            "portLevelMtls: {8080: {mode: DISABLE}}}",
            AP + "spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}], "
            "when: [{key: 'request.auth.claims[groups]', values: [admin]}]}]}",
            RA + f"spec: {{jwtRules: [{{issuer: a, jwksUri: 'file://{jwks}'}}]}}",
        ]
    )
    result = compile_text(text)
    assert result.ok, [str(d) for d in result.diagnostics]


def test_vs_naming_a_missing_gateway_is_warned() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: default}\n"
        "spec: {hosts: [a.example.com], gateways: [nowhere], http: []}"
    )
    result = compile_text(text)
    assert any(d.code == "dangling" and "nowhere" in d.message for d in result.diagnostics)
