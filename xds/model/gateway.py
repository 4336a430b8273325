"""Gateway: field table and IR (istio networking/v1 gateway.proto). Carried in MeshConfig like the security
kinds and parsed on demand by `gateways(config.carried)`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from xds.model.meta import CarriedResource, Labels, Meta
from xds.model.schema import Bool, Enum, F, ListOf, MapOf, Obj, Port, Spec, Str

NO = False
PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS")
TLS_MODES = ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL")

_TLS = Obj(
    {
        "httpsRedirect": F(Bool),
        "mode": F(Enum(*TLS_MODES)),
        "serverCertificate": F(Str),
        "privateKey": F(Str),
        "caCertificates": F(Str),
        "credentialName": F(
            Str,
            True,
            "",
            "files MECHA_CREDENTIALS_DIR/NAME/tls.crt, tls.key (+ ca.crt), not a Kubernetes Secret",
        ),
        "credentialNames": F(ListOf(Str), NO, "use credentialName or serverCertificate/privateKey files"),
        "subjectAltNames": F(ListOf(Str)),
        "minProtocolVersion": F(Enum("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"), NO),
        "maxProtocolVersion": F(Enum("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"), NO),
        "cipherSuites": F(ListOf(Str), NO),
        "verifyCertificateSpki": F(ListOf(Str), NO),
        "verifyCertificateHash": F(ListOf(Str), NO),
        "caCrl": F(Str, NO),
    }
)
_SERVER = Obj(
    {
        "port": F(Obj({"number": F(Port), "protocol": F(Str), "name": F(Str), "targetPort": F(Port)})),
        "hosts": F(ListOf(Str)),
        "tls": F(_TLS),
        "name": F(Str),
        "bind": F(Str, NO, "the proxy binds 0.0.0.0 (or its gateway_ports mapping)"),
        "defaultEndpoint": F(Str, NO),
    }
)
GATEWAY = Obj({"selector": F(MapOf(Str)), "servers": F(ListOf(_SERVER))})
GATEWAY_SPECS: dict[str, Spec] = {"Gateway": GATEWAY}


@dataclass(frozen=True, slots=True)
class GatewayTLS:
    https_redirect: bool = False
    mode: str = ""  # "" when only httpsRedirect is set
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    credential_name: str = ""  # SDS secrets kubernetes://<name> (+ <name>-cacert for MUTUAL)
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayServer:
    index: int  # position in spec.servers (diagnostics)
    number: int
    protocol: str  # upper case
    port_name: str = ""
    hosts: tuple[str, ...] = ()
    tls: GatewayTLS | None = None

    @property
    def is_http(self) -> bool:
        return self.protocol in ("HTTP", "HTTP2", "GRPC")

    @property
    def terminates_tls(self) -> bool:
        return self.protocol == "HTTPS" or (
            self.protocol == "TLS" and self.tls is not None and self.tls.mode in ("SIMPLE", "MUTUAL")
        )


@dataclass(frozen=True, slots=True)
class Gateway:
    meta: Meta
    selector: Labels = ()
    servers: tuple[GatewayServer, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"


def parse_gateway(res: CarriedResource) -> Gateway:
    spec: dict[str, Any] = json.loads(res.spec_json)
    servers = []
    for i, raw in enumerate(spec.get("servers") or ()):
        port = raw.get("port") or {}
        tls_raw = raw.get("tls")
        tls = None
        if tls_raw is not None:
            tls = GatewayTLS(
                https_redirect=bool(tls_raw.get("httpsRedirect")),
                mode=str(tls_raw.get("mode") or ""),
                server_certificate=str(tls_raw.get("serverCertificate") or ""),
                private_key=str(tls_raw.get("privateKey") or ""),
                ca_certificates=str(tls_raw.get("caCertificates") or ""),
                credential_name=str(tls_raw.get("credentialName") or ""),
                subject_alt_names=tuple(str(s) for s in tls_raw.get("subjectAltNames") or ()),
            )
        servers.append(
            GatewayServer(
                index=i,
                number=int(port.get("number") or 0),
                protocol=str(port.get("protocol") or "").upper(),
                port_name=str(port.get("name") or ""),
                hosts=tuple(str(h) for h in raw.get("hosts") or ()),
                tls=tls,
            )
        )
    selector = tuple(sorted((str(k), str(v)) for k, v in (spec.get("selector") or {}).items()))
    return Gateway(res.meta, selector, tuple(servers))


@lru_cache(maxsize=8)
def gateways(carried: tuple[CarriedResource, ...]) -> tuple[Gateway, ...]:
    return tuple(parse_gateway(r) for r in carried if r.meta.kind == "Gateway")
