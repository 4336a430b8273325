"""Gateway `tls.credentialName` -> SDS secrets, the names istiod's SDS uses: `tls.crt` + `tls.key` become
Secret `kubernetes://<name>`; an optional `ca.crt` becomes `kubernetes://<name>-cacert` (validation context,
MUTUAL).

Pure: the files are read before translation (xds/credential_files.py) and the loaded credentials are passed
to the builder (xds/translate/security/resolved.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls

from xds import types
from xds.types import Resource

SECRET_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"


def secret_name(credential: str) -> str:
    return f"{SECRET_PREFIX}{credential}"


def ca_secret_name(credential: str) -> str:
    return f"{SECRET_PREFIX}{credential}{CA_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    certificate: Resource  # kubernetes://<name>
    ca: Resource | None = None  # kubernetes://<name>-cacert when ca.crt exists

    @property
    def resources(self) -> list[Resource]:
        return [self.certificate] if self.ca is None else [self.certificate, self.ca]


def make_credential(name: str, cert: bytes, key: bytes, ca: bytes | None) -> Credential:
    secret = tls.Secret(
        name=secret_name(name),
        tls_certificate=tls.TlsCertificate(
            certificate_chain=core.DataSource(inline_bytes=cert),
            private_key=core.DataSource(inline_bytes=key),
        ),
    )
    ca_res = None
    if ca is not None:
        ca_secret = tls.Secret(
            name=ca_secret_name(name),
            validation_context=tls.CertificateValidationContext(trusted_ca=core.DataSource(inline_bytes=ca)),
        )
        ca_res = Resource.make(types.SECRET, ca_secret_name(name), bytes(ca_secret))
    return Credential(name, Resource.make(types.SECRET, secret_name(name), bytes(secret)), ca_res)
