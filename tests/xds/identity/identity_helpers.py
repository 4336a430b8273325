"""A secure control plane in-process and a raw ADS/CA client: what an attacker with grpcio can send."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from xds import types
from xds.agent.certs import make_csr
from xds.agent.channel import SERVER_NAME
from xds.ca.messages import FULL_METHOD, CertificateRequest, CertificateResponse
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.server.codec import SotwRequest, decode_sotw_response, encode_sotw_request
from xds.testing.fake_proxy import node_bytes

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
REVIEWS_META = {
    "mode": "sidecar",
    "namespace": "default",
    "labels": {"app": "reviews", "version": "v1"},
    "apps": [{"name": "reviews", "app_port": 9081, "inbound_port": 15006, "labels": {"app": "reviews"}}],
}


@asynccontextmanager
async def secure_control_plane(state: Path, **overrides: Any) -> AsyncIterator[ControlPlane]:
    settings = Settings(api_port=0, xds_port=0, state_dir=state, watch=False, mtls=True, **overrides)
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


def channel(port: int, root: Path | None) -> grpc.aio.Channel:
    if root is None:
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    creds = grpc.ssl_channel_credentials(root.read_bytes())
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)]
    )


@dataclass
class Outcome:
    responses: list[Any]
    code: grpc.StatusCode | None = None
    details: str = ""


async def ads_request(
    port: int,
    root: Path | None,
    node_id: str,
    meta: Mapping[str, Any],
    token: str | None = None,
    type_url: str = types.SECRET,
    names: list[str] | None = None,
    within_s: float = 3.0,
) -> Outcome:
    """One DiscoveryRequest; the responses received within `within_s` or the status the stream ended with."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = encode_sotw_request(
        SotwRequest(node=node_bytes(node_id, meta), type_url=type_url, resource_names=names or [])
    )
    async with channel(port, root) as ch:
        call = ch.stream_stream(ADS_METHOD)(metadata=metadata)
        outcome = Outcome([])
        try:
            await call.write(request)
            async with asyncio.timeout(within_s):
                while True:
                    raw = await call.read()
                    if raw is grpc.aio.EOF:
                        break
                    outcome.responses.append(decode_sotw_response(raw))
        except TimeoutError:
            pass
        except grpc.aio.AioRpcError as exc:
            outcome.code, outcome.details = exc.code(), exc.details() or ""
        finally:
            call.cancel()
        return outcome


async def create_certificate(
    port: int, root: Path, token: str | None, csr_token: str, trust_domain: str = "cluster.local"
) -> tuple[Any, grpc.StatusCode | None, str]:
    """(response or None, status code, details) of a CSR for the SPIFFE ids csr_token names."""
    _key, csr = make_csr(trust_domain, csr_token)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with channel(port, root) as ch:
        call = ch.unary_unary(
            FULL_METHOD, CertificateRequest.SerializeToString, CertificateResponse.FromString
        )
        try:
            return await call(CertificateRequest(csr=csr.decode()), metadata=metadata, timeout=5), None, ""
        except grpc.aio.AioRpcError as exc:
            return None, exc.code(), exc.details() or ""


def root_of(cp: ControlPlane) -> Path:
    assert cp.settings.ca_dir is not None
    return cp.settings.ca_dir / "root-cert.pem"


def issue(cp: ControlPlane, proxy_id: str = "reviews-v1", **kw: Any) -> str:
    assert cp.identity.issuer is not None
    kw.setdefault("namespace", "default")
    kw.setdefault("service_accounts", ["reviews"])
    kw.setdefault("labels", {"app": ["reviews"], "version": ["v1"]})
    token, _cred = cp.identity.issuer.issue(proxy_id, **kw)
    return token


def serving_certificate(port: int, root: Path) -> x509.Certificate:
    """The certificate a new TLS connection to the xDS port is shown (verified against the mesh root)."""
    context = ssl.create_default_context(cafile=str(root))
    context.check_hostname = False  # the name is checked by the agents (SERVER_NAME); here: chain only
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
