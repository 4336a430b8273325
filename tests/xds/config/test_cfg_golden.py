"""Golden tests: golden/<case>.in.yaml -> one file per proxy and xDS type (proto3 JSON as YAML).

Regenerate with `pytest tests/xds/config --update-golden` (it also deletes the outputs of removed cases,
proxies and types); never edit the outputs by hand. The harness is golden_harness.py.

A case may start with a header, its first YAML document (ended by `---`), saying what it is translated for:

    kind: GoldenCase
    proxies:                  # default: one sidecar, productpage-v1 (cfg_helpers.sidecar())
    - mode: gateway           # sidecar | node | gateway | proxyless (default sidecar)
      id: istio-ingressgateway  # the node id (default per mode, golden_harness.MODE_DEFAULTS)
      gateway_ports: {"443": 18443}  # any other key is node.metadata.mecha (xds/proxy.py); a key given
                                     # replaces the mode's default (labels, apps: whole values)
    mtls: true                # the control plane's CA is on: SDS default/ROOTCA, auto-mTLS (default false)
    agentSds: false           # TLS contexts name the agent's SDS; the control plane serves no key
    routeTables: scoped       # auto (default; scoped from 100 services) | single | scoped (SRDS)
    credentials:              # gateway credentialName folders (tls.crt for hosts, tls.key, ca.crt if ca)
      bookinfo-credential: {hosts: [bookinfo.example.com], ca: false}
    naive: false              # the reference path lacks what the case uses (see below)

A case without a header is translated for the default sidecar, which is what every case was before the
header existed. Outputs: `<case>.<TYPE>.yaml` for a one-proxy case, `<case>.<proxy id>.<TYPE>.yaml` with
several; CDS, EDS, LDS and RDS always, SRDS and SDS when the proxy has such resources (names as
xds/types.py). Certificates and keys are made afresh every run, so in SDS outputs a DataSource that holds
PEM is written as `pemSummary` (each certificate's subject, SANs and CA flag; keys by their PEM label), and
the OS trust bundle that SIMPLE tls verifies against by default (its path differs between distributions) as
`<system CA bundle>`.

The oracle (translate_oracle.py here) must decode to the same CDS/EDS/LDS/RDS for every sidecar or
node proxy of a case. It has no translation of its own for gateway and proxyless proxies, mTLS
(`mtls: true`) and scoped route tables (the proxy got SRDS): those proxies are not compared. Nor for security
policies (PeerAuthentication, AuthorizationPolicy, RequestAuthentication), DestinationRule `tls` and
Telemetry tracing: a case using them says `naive: false`, and the test fails if the reference path then
agrees with every proxy it compares (the header would be stale).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cfg_helpers import sidecar
from golden_harness import orphan_outputs, parse_case, render, translate

# decoding warns of deprecated fields that istiod emits too (RBAC Principal.metadata, grpcgen's SAN match)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Principal.metadata is deprecated:DeprecationWarning",
    "ignore:CertificateValidationContext.match_subject_alt_names is deprecated:DeprecationWarning",
)
GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    out = translate(GOLDEN, case)
    if out.naive_expected:
        assert not out.naive_differs, (
            f"{case}: the fast path differs from the reference path: {out.naive_differs}"
        )
    else:
        assert out.naive_differs or not out.naive_compared, (
            f"{case}: says naive: false but the reference path agrees for {out.naive_compared}"
        )
    for name, got in out.files.items():
        path = GOLDEN / name
        if update_golden:
            rendered = render(got)
            if not path.exists() or path.read_text() != rendered:
                path.write_text(rendered)
        assert path.exists(), f"missing {name}: run pytest tests/xds/config --update-golden"
        assert yaml.safe_load(path.read_text()) == got, f"{name} differs from the translation"


def test_no_orphan_golden_outputs(update_golden: bool) -> None:
    expected = {name for case in CASES for name in translate(GOLDEN, case).files}
    orphans = orphan_outputs(GOLDEN, expected)
    if update_golden:
        for path in orphans:
            path.unlink()
        return
    assert not orphans, f"orphan golden files {[p.name for p in orphans]}: run --update-golden"


def test_orphans_are_outputs_of_removed_cases_proxies_and_types(tmp_path: Path) -> None:
    for name in ("kept.in.yaml", "kept.CDS.yaml", "kept.SDS.yaml", "gone.CDS.yaml", "two.gw.LDS.yaml"):
        (tmp_path / name).write_text("{}\n")
    orphans = orphan_outputs(tmp_path, {"kept.CDS.yaml", "two.sidecar.LDS.yaml"})
    assert [p.name for p in orphans] == ["gone.CDS.yaml", "kept.SDS.yaml", "two.gw.LDS.yaml"]


def test_a_case_without_header_is_the_default_sidecar() -> None:
    case = parse_case("plain", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n")
    assert case.proxies == (sidecar(),) and not case.mtls and case.route_tables == "auto" and case.naive


def test_the_header_keeps_line_numbers_and_refuses_unknown_keys() -> None:
    text = "kind: GoldenCase\nmtls: true\n---\napiVersion: v1\n"
    case = parse_case("c", text)
    assert case.mtls and case.text.splitlines()[3] == "apiVersion: v1"
    with pytest.raises(ValueError, match="unknown GoldenCase keys"):
        parse_case("c", "kind: GoldenCase\nmtsl: true\n---\n")
