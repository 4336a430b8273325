"""TLS + workload credentials for the xDS benches, as `mecha serve` runs its port by default (xds/identity/).

The server gets what xds.identity.controlplane.xds_identity gives it (a serving certificate from the mesh CA,
an authenticator checking every stream's bearer credential); every proxy gets its own signed credential.
Protocol-level proxies open a TLS channel of their own (own TCP + TLS session) and send the credential as
call metadata; a real Envoy's bootstrap gets the same: TLS to the xDS cluster against the mesh root, the
credential as the ADS stream's initial metadata. That is what the control plane sees from an agent (the agent
dials it over TLS with the proxy's credential), without an agent process per Envoy on these 2 cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import yaml

from xds.agent.channel import SERVER_NAME
from xds.ca.authority import CertificateAuthority
from xds.identity.authenticator import CredentialAuthenticator
from xds.identity.controlplane import ServingCertificate
from xds.identity.credential import CredentialIssuer, CredentialVerifier
from xds.identity.revocation import RevocationList

TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


class FleetSecurity:
    """One mesh CA and credential key in `workdir`; tokens per proxy id (cached: one signature each).
    labels_of: the labels a proxy's credential allows (its node metadata claims them: a `mecha serve`
    control plane checks the claim; the in-process bench's proxies claim none), its app label the service
    account."""

    def __init__(
        self, workdir: Path, labels_of: Callable[[str], Mapping[str, list[str]]] | None = None
    ) -> None:
        self.workdir = workdir
        self.labels_of = labels_of
        self.ca = CertificateAuthority.load_or_create(workdir / "ca")
        self.issuer = CredentialIssuer.load_or_create(workdir)
        self.authenticator = CredentialAuthenticator(
            CredentialVerifier(self.issuer.public_key), RevocationList()
        )
        self.serving = ServingCertificate(
            self.ca, [SERVER_NAME, "localhost"], ["127.0.0.1"], timedelta(days=1)
        )
        self.root_file = workdir / "root-cert.pem"
        self.root_file.write_bytes(self.ca.root_pem)
        self._tokens: dict[str, str] = {}

    def server_options(self) -> dict[str, Any]:
        return {"authenticator": self.authenticator, "server_credentials": self.serving.credentials()}

    def token(self, proxy_id: str) -> str:
        found = self._tokens.get(proxy_id)
        if found is None:
            labels = self.labels_of(proxy_id) if self.labels_of is not None else None
            # the account its WorkloadEntry implies (no serviceAccount: the app label), as a consistent
            # fleet has: another one changes what every client expects of its endpoints (xds/identity/peers)
            account = (labels or {}).get("app", ["default"])[0]
            found, _ = self.issuer.issue(proxy_id, "default", [account], labels, mode="sidecar", ttl_s=86400)
            self._tokens[proxy_id] = found
        return found

    def tokens_file(self, proxy_ids: list[str]) -> Path:
        """Credentials of the protocol-level proxies, for their worker processes (0600 temp folder)."""
        path = self.workdir / f"tokens-{proxy_ids[0]}.json"  # one file per worker
        path.write_text(json.dumps({pid: self.token(pid) for pid in proxy_ids}))
        return path

    def secure_bootstrap(self, bootstrap_yaml: str, proxy_id: str) -> str:
        """A real Envoy's bootstrap: TLS to mecha_xds (mesh root, the server's fixed name) and the credential
        sent on the ADS stream (GrpcService.initial_metadata)."""
        doc = yaml.safe_load(bootstrap_yaml)
        for cluster in doc["static_resources"]["clusters"]:
            if cluster["name"] != "mecha_xds":
                continue
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": TLS_CONTEXT,
                    "sni": SERVER_NAME,
                    "common_tls_context": {
                        "alpn_protocols": ["h2"],
                        "validation_context": {
                            "trusted_ca": {"filename": str(self.root_file)},
                            "match_typed_subject_alt_names": [
                                {"san_type": "DNS", "matcher": {"exact": SERVER_NAME}}
                            ],
                        },
                    },
                },
            }
        ads = doc["dynamic_resources"]["ads_config"]
        for service in ads["grpc_services"]:
            service["initial_metadata"] = [
                {"key": "authorization", "value": f"Bearer {self.token(proxy_id)}"}
            ]
        return yaml.safe_dump(doc, sort_keys=False)


def channel_credentials(root_file: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=root_file.read_bytes())
