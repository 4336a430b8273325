"""BackendTLSPolicy units: the DestinationRule it becomes (CA, SNI, SANs, port), its status (ancestors,
conflicts, invalid references) and the CRD rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from gwapi_helpers import compile_text, self_signed

from xds.diagnostics import Severity
from xds.gatewayapi.api import statuses
from xds.gatewayapi.backendtls import UNTRUSTED_CA
from xds.gatewayapi.status import render
from xds.pipeline import load_text

BASE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: infra}
spec:
  hosts: [api.infra.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8443, name: https, protocol: HTTP}, {number: 9090, name: admin, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: mecha
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: api, port: 8443}]}]
---
"""


def policy(
    name: str, validation: str, target: str = '{group: "", kind: Service, name: api}', created: str = ""
) -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: infra{stamp}}}
spec:
  targetRefs: [{target}]
  validation: {validation}
---
"""


def config_map(pem: str, name: str = "ca") -> str:
    body = "".join(f"    {line}\n" for line in pem.strip().splitlines())
    meta = f"metadata: {{name: {name}, namespace: infra}}"
    return f"apiVersion: v1\nkind: ConfigMap\n{meta}\ndata:\n  ca.crt: |\n{body}---\n"


CA_REF = '{caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}], hostname: api.example.com}'


def policy_status(text: str, name: str) -> dict[str, tuple[str, str]]:
    result = compile_text(text)
    assert result.config is not None, [str(d) for d in result.errors]
    docs, _ = load_text(text, "x.yaml")
    found = next(
        s for s in statuses(docs, result.config) if s.meta.name == name and s.meta.kind == "BackendTLSPolicy"
    )
    rendered = render(found)["status"]["ancestors"]
    assert [a["ancestorRef"]["name"] for a in rendered] == ["edge"]
    return {c["type"]: (c["status"], c["reason"]) for c in rendered[0]["conditions"]}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return self_signed(Path(tmp_path_factory.mktemp("ca")), "api.example.com").decode()


def test_a_policy_becomes_a_destination_rule_with_the_configmap_ca(pem: str) -> None:
    result = compile_text(BASE + config_map(pem) + policy("p", CA_REF))
    assert result.config is not None
    [rule] = result.config.destination_rules
    tls = rule.traffic_policy.tls if rule.traffic_policy else None
    assert rule.host == "api.infra.svc.cluster.local" and tls is not None
    assert (tls.mode, tls.sni, tls.subject_alt_names, tls.ca_pem) == (
        "SIMPLE",
        "api.example.com",
        ("api.example.com",),
        pem.strip() + "\n",
    )


def test_section_name_targets_one_port_and_subject_alt_names_replace_the_hostname(pem: str) -> None:
    san = '[{type: URI, uri: "spiffe://td/ns/infra/sa/api"}]'
    validation = CA_REF.replace(
        "hostname: api.example.com", f"hostname: api.example.com, subjectAltNames: {san}"
    )
    target = '{group: "", kind: Service, name: api, sectionName: admin}'
    result = compile_text(BASE + config_map(pem) + policy("p", validation, target))
    assert result.config is not None
    [rule] = result.config.destination_rules
    assert rule.traffic_policy is not None and rule.traffic_policy.tls is None
    [(port, at_port)] = rule.traffic_policy.port_level
    assert port == 9090 and at_port.tls is not None
    assert at_port.tls.subject_alt_names == ("spiffe://td/ns/infra/sa/api",)


def test_well_known_system_uses_the_system_roots() -> None:
    result = compile_text(BASE + policy("p", "{wellKnownCACertificates: System, hostname: api.example.com}"))
    assert result.config is not None
    tls = result.config.destination_rules[0].traffic_policy.tls  # type: ignore[union-attr]
    assert tls is not None and tls.ca_pem == "" and tls.ca_certificates == ""


@pytest.mark.parametrize(
    ("validation", "extra", "expected"),
    [
        (
            CA_REF,
            "",
            {
                "Accepted": ("False", "NoValidCACertificate"),
                "ResolvedRefs": ("False", "InvalidCACertificateRef"),
            },
        ),
        (
            CA_REF,
            "bad",
            {
                "Accepted": ("False", "NoValidCACertificate"),
                "ResolvedRefs": ("False", "InvalidCACertificateRef"),
            },
        ),
        (
            CA_REF.replace("kind: ConfigMap", "kind: Secret"),
            "",
            {"Accepted": ("False", "NoValidCACertificate"), "ResolvedRefs": ("False", "InvalidKind")},
        ),
        (
            "{wellKnownCACertificates: Mozilla, hostname: api.example.com}",
            "",
            {"Accepted": ("False", "Invalid"), "ResolvedRefs": ("True", "ResolvedRefs")},
        ),
    ],
)
def test_no_usable_ca_is_reported_and_trusts_nothing(
    validation: str, extra: str, expected: dict[str, tuple[str, str]]
) -> None:
    cm = (
        config_map("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")
        if extra == "bad"
        else ""
    )
    text = BASE + cm + policy("p", validation)
    assert policy_status(text, "p") == expected
    result = compile_text(text)
    assert result.config is not None
    tls = result.config.destination_rules[0].traffic_policy.tls  # type: ignore[union-attr]
    assert tls is not None and tls.ca_pem == UNTRUSTED_CA  # connections fail: never unverified


def test_the_older_policy_wins_a_target(pem: str) -> None:
    text = BASE + config_map(pem) + policy("newer", CA_REF, created="2026-01-02T00:00:00Z")
    text += policy("older", CA_REF, created="2026-01-01T00:00:00Z")
    assert policy_status(text, "older")["Accepted"] == ("True", "Accepted")
    assert policy_status(text, "newer")["Accepted"] == ("False", "Conflicted")
    result = compile_text(text)
    assert result.config is not None and [r.meta.name for r in result.config.destination_rules] == [
        "gateway-api.backendtls.older.0"
    ]


@pytest.mark.parametrize(
    ("validation", "message"),
    [
        ("{hostname: api.example.com}", "must specify either CACertificateRefs or WellKnownCACertificates"),
        (
            CA_REF.replace("{caCertificateRefs", "{wellKnownCACertificates: System, caCertificateRefs"),
            "must not contain both CACertificateRefs and WellKnownCACertificates",
        ),
        (
            "{wellKnownCACertificates: System, hostname: a.b, subjectAltNames: [{type: Hostname}]}",
            "must contain Hostname",
        ),
        ("{wellKnownCACertificates: System}", "required field is missing"),
    ],
)
def test_invalid_policies_are_refused(validation: str, message: str) -> None:
    result = compile_text(policy("p", validation))
    errors = [str(d) for d in result.diagnostics if d.severity is Severity.ERROR]
    assert any(message in e for e in errors), errors


def test_a_configmap_with_non_string_data_is_refused() -> None:
    result = compile_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: infra}\ndata: {ca.crt: 3}\n"
    )
    errors = [str(d) for d in result.diagnostics if d.severity is Severity.ERROR]
    assert any("field data: expected a map of strings" in e for e in errors), errors
