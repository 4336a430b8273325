"""The agent's one gRPC channel to the control plane: TLS verified against the mesh root, credential added."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc

from xds.bootstrap import KEEPALIVE, REPLICA_KEEPALIVE
from xds.identity.credential import read_token_file

# The name in the control plane's serving certificate (xds/controlplane/identity.py); checked whatever
# address the agent dials (an IP, a compose service name), like istio-agent's istiod.istio-system.svc.
SERVER_NAME = "mecha-controlplane"


def channel_target(spec: str) -> str:
    """`host:port` as is; `host:port,host:port,...` (control-plane replicas) as one gRPC target over every
    address (gRPC's ipv4:/ipv6: lists, pick_first): a stream that fails opens again on another replica."""
    if "," not in spec:
        return spec
    addresses: list[str] = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"control plane {item!r}: expected HOST:PORT")
        for *_, sockaddr in socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM):
            ip = str(sockaddr[0])
            address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if address not in addresses:
                addresses.append(address)
    families = {"ipv6" if a.startswith("[") else "ipv4" for a in addresses}
    if len(families) != 1:
        raise ValueError(f"control plane {spec!r}: give IPv4 or IPv6 replicas, not both")
    return f"{families.pop()}:{','.join(addresses)}"


DNS_SCHEME = "dns:///"  # one name for every replica (a Kubernetes headless Service): gRPC resolves it


def replicas(spec: str) -> bool:
    """Several control-plane replicas: a list, or a dns:/// name whose records gRPC's resolver spreads over
    (and re-resolves when a stream breaks, so a replaced pod's new address is found)."""
    return "," in spec or spec.startswith(DNS_SCHEME)


def _ms(duration: str) -> int:
    return int(float(duration.removesuffix("s")) * 1000)


def keepalive_options(spec: str) -> tuple[tuple[str, int], ...]:
    """The channel pings the control plane as a direct Envoy's bootstrap would (xds/bootstrap.py): a dead or
    frozen one fails the open ADS call, which ends Envoy's stream (Envoy's own keepalive only reaches this
    live agent). Replicas (several addresses) get the faster replica numbers so a frozen one is left within
    seconds. max_pings_without_data 0: gRPC clients otherwise stop pinging after 2 pings on a stream that
    sends nothing (a synced ADS stream), and a control plane frozen later would go unnoticed."""
    interval, timeout = REPLICA_KEEPALIVE if replicas(spec) else KEEPALIVE
    return (
        ("grpc.keepalive_time_ms", _ms(interval)),
        ("grpc.keepalive_timeout_ms", _ms(timeout)),
        # A keepalive ping due while another ping is unanswered (gRPC's BDP probe sends them too) only waits
        # for that one, whose own timeout is 1 min by default: bound every ping by the keepalive timeout.
        ("grpc.http2.ping_timeout_ms", _ms(timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    )


# gRPC's default reconnect backoff (1 s, then x1.6 up to 120 s) left an agent started beside its control plane
# (`mecha up` starts both at once) idle for up to ~2.6 s after the control plane listens; Envoy's own xDS
# retry is about every second.
RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))


def open_channel(target: str, root_cert: Path | None) -> grpc.aio.Channel:
    """root_cert None: plaintext (only against a control plane started with --insecure-xds). target: one
    host:port, or several comma-separated (replicas)."""
    options = [*keepalive_options(target), *RECONNECT_OPTIONS, ("grpc.max_receive_message_length", -1)]
    target = channel_target(target)
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
