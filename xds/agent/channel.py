"""The agent's one gRPC channel to the control plane: TLS verified against the mesh root, credential added."""

from __future__ import annotations

from pathlib import Path

import grpc

from xds.identity.credential import read_token_file

# The name in the control plane's serving certificate (xds/controlplane/identity.py); checked whatever
# address the agent dials (an IP, a compose service name), like istio-agent's istiod.istio-system.svc.
SERVER_NAME = "mecha-controlplane"


def open_channel(target: str, root_cert: Path | None) -> grpc.aio.Channel:
    """root_cert None: plaintext (only against a control plane started with --insecure-xds)."""
    options = [
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.max_receive_message_length", -1),
    ]
    if root_cert is None:
        return grpc.aio.insecure_channel(target, options=options)
    creds = grpc.ssl_channel_credentials(root_certificates=root_cert.read_bytes())
    return grpc.aio.secure_channel(
        target, creds, options=[*options, ("grpc.ssl_target_name_override", SERVER_NAME)]
    )


class CredentialSource:
    """The agent's credential, re-read on every use: a re-issued file takes effect on the next stream."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def token(self) -> str:
        return read_token_file(self.path)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token()}"),)
