"""The golden cases' harness: a case's `kind: GoldenCase` header, the proxies and builder options it names,
and the output files its translation gives (the format is documented in test_cfg_golden.py)."""

from __future__ import annotations

import base64
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import betterproto2
import yaml
from cfg_helpers import compile_text, decoded, errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret
from translate_oracle import build_naive

from xds import types
from xds.ca import CertificateAuthority, WorkloadCertificates
from xds.cache.snapshot import Snapshot
from xds.credential_files import CredentialStore
from xds.diagnostics import Severity
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity, ProxyMode
from xds.translate.security.upstream import system_ca_bundle

HEADER_KIND = "GoldenCase"
ALWAYS = ("CDS", "EDS", "LDS", "RDS")  # written for every proxy, empty or not
WHEN_PRESENT = ("SRDS", "SDS")  # written only when the proxy has resources of that type
ROUTE_TABLES = ("auto", "single", "scoped")
HEADER_KEYS = {"kind", "proxies", "mtls", "agentSds", "routeTables", "credentials", "naive"}

# node.metadata.mecha of each mode when the header leaves it out; the sidecar is cfg_helpers.sidecar()
MODE_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sidecar": (
        "productpage-v1",
        {
            "mode": "sidecar",
            "namespace": "default",
            "outbound_port": 15001,
            "dapr_http_port": 3500,
            "dapr_grpc_port": 50001,
            "capabilities_http": "127.0.0.1:3501",
            "capabilities_grpc": "127.0.0.1:50002",
            "labels": {"app": "productpage", "version": "v1"},
            "apps": [{"name": "productpage", "app_port": 9080, "inbound_port": 15006}],
        },
    ),
    "node": (
        "node-1",
        {
            "mode": "node",
            "namespace": "default",
            "outbound_port": 15001,
            "capabilities_http": "127.0.0.1:3501",
            "capabilities_grpc": "127.0.0.1:50002",
        },
    ),
    "gateway": (
        "istio-ingressgateway",
        {"mode": "gateway", "namespace": "istio-system", "labels": {"istio": "ingressgateway"}},
    ),
    "proxyless": (
        "productpage-grpc",
        {"mode": "proxyless", "namespace": "default", "labels": {"app": "productpage", "version": "v1"}},
    ),
}


@dataclass(frozen=True)
class CredentialSpec:
    """A gateway `credentialName` folder the harness writes: tls.crt for `hosts`, tls.key, ca.crt if `ca`."""

    hosts: tuple[str, ...]
    ca: bool = False


@dataclass(frozen=True)
class GoldenCase:
    name: str
    text: str  # the mesh documents; the header's lines are blanked so diagnostics keep their line numbers
    proxies: tuple[ProxyIdentity, ...]
    mtls: bool = False
    agent_sds: bool = False
    route_tables: str = "auto"
    credentials: dict[str, CredentialSpec] = field(default_factory=dict)
    naive: bool = True


@dataclass(frozen=True)
class Translation:
    files: dict[str, dict[str, Any]]  # output file name -> decoded resources
    naive_differs: tuple[str, ...]  # "<proxy> <type>" where the reference path gives other resources
    naive_compared: tuple[str, ...]  # proxies compared with the reference path
    naive_expected: bool  # the header's `naive`: the reference path should agree with the compared ones


def _split_header(text: str) -> tuple[dict[str, Any] | None, str]:
    """(header, documents): the header is the first document when its kind is GoldenCase."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.rstrip() == "---"), len(lines))
    first = yaml.safe_load("".join(lines[:end]))
    if not isinstance(first, dict) or first.get("kind") != HEADER_KIND:
        return None, text
    return first, "\n" * end + "".join(lines[end:])


def _proxy(entry: dict[str, Any], where: str) -> ProxyIdentity:
    mode = str(entry.get("mode", "sidecar"))
    if mode not in MODE_DEFAULTS:
        raise ValueError(f"{where}.mode: {mode!r} is not one of {', '.join(MODE_DEFAULTS)}")
    default_id, defaults = MODE_DEFAULTS[mode]
    mecha = {**defaults, **{k: v for k, v in entry.items() if k != "id"}}
    metadata: dict[str, Any] = {"mecha": mecha}
    if mode == "proxyless":
        metadata["GENERATOR"] = "grpc"  # what istio-agent writes for a proxyless gRPC app
    return ProxyIdentity.from_node(str(entry.get("id") or default_id), metadata)


def parse_case(name: str, text: str) -> GoldenCase:
    header, body = _split_header(text)
    if header is None:
        return GoldenCase(name, text, (_proxy({}, "proxies[0]"),))
    unknown = sorted(set(header) - HEADER_KEYS)
    if unknown:
        raise ValueError(f"{name}: unknown GoldenCase keys {unknown} (known: {sorted(HEADER_KEYS)})")
    entries = header.get("proxies") or [{}]
    proxies = tuple(_proxy(dict(e or {}), f"{name}: proxies[{i}]") for i, e in enumerate(entries))
    if len({p.id for p in proxies}) != len(proxies):
        raise ValueError(f"{name}: two proxies share an id")
    route_tables = str(header.get("routeTables", "auto"))
    if route_tables not in ROUTE_TABLES:
        raise ValueError(f"{name}: routeTables {route_tables!r} is not one of {', '.join(ROUTE_TABLES)}")
    credentials = {
        str(k): CredentialSpec(tuple(str(h) for h in v.get("hosts") or [k]), bool(v.get("ca")))
        for k, v in (header.get("credentials") or {}).items()
    }
    return GoldenCase(
        name,
        body,
        proxies,
        mtls=bool(header.get("mtls", False)),
        agent_sds=bool(header.get("agentSds", False)),
        route_tables=route_tables,
        credentials=credentials,
        naive=bool(header.get("naive", True)),
    )


def load_case(folder: Path, name: str) -> GoldenCase:
    return parse_case(name, (folder / f"{name}.in.yaml").read_text())


# ---- credentials (gateway tls.credentialName) ---------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _certificate(
    subject: str, hosts: tuple[str, ...], key: ec.EllipticCurvePrivateKey, issuer: tuple[str, Any] | None
) -> x509.Certificate:
    """issuer: (common name, key) of the signing CA; None = self-signed (with the CA flag when no hosts)."""
    now = datetime.now(UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=not hosts, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_credentials(folder: Path, credentials: dict[str, CredentialSpec]) -> None:
    """Each credential as istiod's Secret keys would be mounted: <name>/tls.crt, tls.key (+ ca.crt)."""
    for name, spec in credentials.items():
        where = folder / name
        where.mkdir(parents=True)
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = None
        if spec.ca:  # MUTUAL: the client CA; the server certificate is signed by it too
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_name = f"{name} CA"
            (where / "ca.crt").write_bytes(_pem(_certificate(ca_name, (), ca_key, None)))
            issuer = (ca_name, ca_key)
        (where / "tls.crt").write_bytes(_pem(_certificate(spec.hosts[0], spec.hosts, key, issuer)))
        (where / "tls.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


# ---- SDS: PEM contents are fresh keys every run; the golden file keeps what identifies them ----------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def pem_summary(data: bytes) -> list[str]:
    """One line per PEM block: a certificate's subject, SANs and CA flag; other blocks by their label."""
    out = []
    for block in _PEM_BLOCK.finditer(data):
        label = block[1].decode()
        if label != "CERTIFICATE":
            out.append(label)
            continue
        cert = x509.load_pem_x509_certificate(block[0])
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = [f"URI:{u}" for u in names.get_values_for_type(x509.UniformResourceIdentifier)]
            sans += [f"DNS:{d}" for d in names.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            sans = []
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        subject = cert.subject.rfc4514_string() or "(empty)"
        out.append(f"CERTIFICATE subject={subject} sans=[{', '.join(sans)}] ca={str(is_ca).lower()}")
    return out


def _summarized(value: Any) -> Any:
    """DataSources holding PEM become {pemSummary: [...]} (not an Envoy field: a golden-file stand-in)."""
    if isinstance(value, list):
        return [_summarized(v) for v in value]
    if not isinstance(value, dict):
        return value
    for key in ("inlineBytes", "inlineString"):
        raw = value.get(key)
        if isinstance(raw, str) and len(value) == 1:
            data = base64.b64decode(raw) if key == "inlineBytes" else raw.encode()
            if b"-----BEGIN " in data:
                return {"pemSummary": pem_summary(data)}
    return {k: _summarized(v) for k, v in value.items()}


def decoded_secrets(snap: Snapshot) -> dict[str, dict[str, Any]]:
    return {
        name: _summarized(Secret.parse(r.body).to_dict(casing=betterproto2.Casing.CAMEL))
        for name, r in sorted(snap.of(types.SECRET).items())
    }


SYSTEM_CA_BUNDLE = "<system CA bundle>"


def _machine_independent(value: Any) -> Any:
    """The OS trust bundle's path (SIMPLE tls without caCertificates) differs between distributions."""
    if isinstance(value, list):
        return [_machine_independent(v) for v in value]
    if isinstance(value, dict):
        return {k: _machine_independent(v) for k, v in value.items()}
    return SYSTEM_CA_BUNDLE if value == system_ca_bundle() else value


def decoded_type(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    found = decoded_secrets(snap) if short == "SDS" else decoded(snap, short)
    return _machine_independent(found)


# ---- translation ----------------------------------------------------------------------------------------


def output_name(case: GoldenCase, proxy: ProxyIdentity, short: str) -> str:
    """<case>.<type>.yaml for a one-proxy case, <case>.<proxy id>.<type>.yaml with several."""
    middle = f".{proxy.id}" if len(case.proxies) > 1 else ""
    return f"{case.name}{middle}.{short}.yaml"


def _build(case: GoldenCase, config: Any) -> dict[str, Snapshot]:
    certs = WorkloadCertificates(CertificateAuthority()) if case.mtls else None
    with tempfile.TemporaryDirectory(prefix="golden-credentials-") as tmp:
        folder = Path(tmp)
        write_credentials(folder, case.credentials)
        builder = SnapshotBuilder(
            certs=certs,
            credentials=CredentialStore(folder) if case.credentials else None,
            route_tables=case.route_tables,
            agent_sds=case.agent_sds,
        )
        snaps = builder.build(config, list(case.proxies))
    refused = [str(d) for d in builder.warnings if d.severity is Severity.ERROR]
    assert not refused, refused
    return snaps


def naive_applies(case: GoldenCase, proxy: ProxyIdentity, snap: Snapshot) -> bool:
    """The reference path builds sidecar/node proxies without a CA and with the single route table."""
    return (
        proxy.mode in (ProxyMode.SIDECAR, ProxyMode.NODE)
        and not case.mtls
        and not snap.of(types.SCOPED_ROUTE)
    )


@cache
def translate(folder: Path, name: str) -> Translation:
    case = load_case(folder, name)
    result = compile_text(case.text, f"{name}.in.yaml")
    # an error drops part of the input (or a gateway server): the outputs would not be what the input says
    assert result.config is not None and not errors(result), [str(d) for d in errors(result)]
    snaps = _build(case, result.config)
    files: dict[str, dict[str, Any]] = {}
    differs: list[str] = []
    compared: list[str] = []
    for proxy in case.proxies:
        snap = snaps[proxy.id]
        for short in ALWAYS + WHEN_PRESENT:
            if short in ALWAYS or snap.of(types.FROM_SHORT[short]):
                files[output_name(case, proxy, short)] = decoded_type(snap, short)
        if naive_applies(case, proxy, snap):
            compared.append(proxy.id)
            naive = build_naive(result.config, proxy)
            differs += [f"{proxy.id} {s}" for s in ALWAYS if decoded(snap, s) != decoded(naive, s)]
    return Translation(files, tuple(differs), tuple(compared), case.naive)


def render(resources: dict[str, Any]) -> str:
    return yaml.safe_dump(resources, sort_keys=False, width=120)


def orphan_outputs(folder: Path, expected: set[str]) -> list[Path]:
    """Output files no case produces any more (a removed case, proxy or type)."""
    return sorted(
        p for p in folder.glob("*.yaml") if not p.name.endswith(".in.yaml") and p.name not in expected
    )
