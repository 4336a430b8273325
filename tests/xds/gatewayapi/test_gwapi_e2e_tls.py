"""Gateway API phase 3 through a real gateway Envoy: HTTPS listeners whose certificates come from
certificateRefs (a Secret of the Gateway's namespace, one of another namespace with a ReferenceGrant), a TLS
Passthrough listener routing TLSRoutes by SNI to TLS backends (the client sees the backend's own
certificate), and a TCP listener with a weighted TCPRoute.

Attacker cases: a listener naming a Secret of another namespace without a grant there never serves it, even
though its files are in the credentials folder (the handshake fails, that certificate is never presented);
a TLSRoute whose backend does not exist gets its connections closed (no fallback to another route)."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gwapi_helpers import self_signed

from xds.credential_files import CredentialStore
from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.gateway import GatewayEnvoy, gateway_envoy, serve_http, service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


CONFIG = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: mecha
  listeners:
  - name: www
    port: 443
    protocol: HTTPS
    hostname: www.example.com
    tls: {certificateRefs: [{name: www-cert}]}
  - name: api
    port: 443
    protocol: HTTPS
    hostname: api.example.com
    tls: {certificateRefs: [{name: api-cert, namespace: certs}]}
  - name: admin
    port: 443
    protocol: HTTPS
    hostname: admin.example.com
    tls: {certificateRefs: [{name: admin-cert, namespace: vault}]}
  - {name: passthrough, port: 8443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}
  - {name: db, port: 5432, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret, name: api-cert}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: web, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  hostnames: [secure.example.com]
  rules: [{backendRefs: [{name: secure, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: broken, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: passthrough}]
  hostnames: [broken.example.com]
  rules: [{backendRefs: [{name: missing, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: catch-all, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: passthrough}]
  rules: [{backendRefs: [{name: other, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: db}]
  rules:
  - backendRefs:
    - {name: db-main, port: 9000, weight: 3}
    - {name: db-replica, port: 9000, weight: 1}
"""


@dataclass
class Rig:
    https: int  # bound ports of listener ports 443, 8443 and 5432
    passthrough: int
    tcp: int
    certs: dict[str, bytes]  # credential / backend name -> certificate PEM
    envoy: EnvoyProcess


async def _http_backend(port: int) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=f"web {request.host} {request.path}")

    return await serve_http(port, handle)


async def _stream_backend(name: str, port: int, tls: ssl.SSLContext | None) -> asyncio.Server:
    """Answers its name on every connection (over TLS when tls is set), then closes."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{name}\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port, ssl=tls)


def _trusting(pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pem.decode())
    return ctx


async def _https_get(port: int, sni: str, trust: bytes, path: str = "/") -> tuple[str, bytes]:
    """(first line + body, the DER certificate the gateway presented)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_trusting(trust), server_hostname=sni
    )
    peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return f"{head.splitlines()[0]} {body}", peer


async def _read_line(port: int, tls: ssl.SSLContext | None = None, sni: str | None = None) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname=sni)
    try:
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    folder = tmp_path_factory.mktemp("credentials")
    certs = {
        "www": self_signed(folder / "www-cert", "www.example.com"),
        "api": self_signed(folder / "certs" / "api-cert", "api.example.com"),
        "admin": self_signed(folder / "vault" / "admin-cert", "admin.example.com"),  # no grant for it
    }
    backend_dir = tmp_path_factory.mktemp("backends")
    certs["secure"] = self_signed(backend_dir / "secure", "secure.example.com")
    certs["other"] = self_signed(backend_dir / "other", "other.example.com")
    ports = {n: free_port() for n in ("web", "secure", "other", "db-main", "db-replica")}
    runner = await _http_backend(ports["web"])
    servers = []
    for name in ("secure", "other"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(backend_dir / name / "tls.crt", backend_dir / name / "tls.key")
        servers.append(await _stream_backend(name, ports[name], ctx))
    for name in ("db-main", "db-replica"):
        servers.append(await _stream_backend(name, ports[name], None))
    protocols = {"web": "HTTP", "secure": "TCP", "other": "TCP", "db-main": "TCP", "db-replica": "TCP"}
    entries = "".join(service_entry(n, "infra", ports[n], p, number=9000) for n, p in protocols.items())

    async def www_answers(gateway: GatewayEnvoy) -> bool:
        answer, _peer = await _https_get(gateway.port(443), "www.example.com", certs["www"])
        return answer.startswith("HTTP/1.1 200")

    try:
        async with gateway_envoy(
            entries + CONFIG,
            "infra/edge",
            tmp_path_factory.mktemp("gateway-api-3"),
            ready=www_answers,  # until the listeners arrived
            listener_ports=(443, 8443, 5432),
            credentials=CredentialStore(folder),
            retry_on=(TimeoutError, OSError, IndexError),
        ) as gateway:
            yield Rig(gateway.port(443), gateway.port(8443), gateway.port(5432), certs, gateway.envoy)
    finally:
        await runner.cleanup()
        for s in servers:
            s.close()


async def test_https_listener_serves_its_secret_and_routes_http(rig: Rig) -> None:
    answer, peer = await _https_get(rig.https, "www.example.com", rig.certs["www"], "/hello")
    assert answer == "HTTP/1.1 200 OK web www.example.com /hello"
    assert peer == _der(rig.certs["www"])


async def test_https_listener_with_a_granted_secret_of_another_namespace(rig: Rig) -> None:
    answer, peer = await _https_get(rig.https, "api.example.com", rig.certs["api"], "/v1")
    assert answer == "HTTP/1.1 200 OK web api.example.com /v1"
    assert peer == _der(rig.certs["api"])


async def test_a_secret_of_another_namespace_without_grant_is_never_served(rig: Rig) -> None:
    """Attacker: the Gateway names vault/admin-cert, whose owner granted nothing; its files exist."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    # SSLError and ConnectionError are OSErrors: the handshake must fail, whatever certificate is offered
    with pytest.raises((OSError, asyncio.IncompleteReadError)):
        await asyncio.open_connection(
            "127.0.0.1", rig.https, ssl=insecure, server_hostname="admin.example.com"
        )


async def test_tls_passthrough_routes_by_sni_to_the_backend_s_own_certificate(rig: Rig) -> None:
    line = await _read_line(rig.passthrough, _trusting(rig.certs["secure"]), "secure.example.com")
    assert line == "secure"  # the handshake verified the backend's certificate: Envoy did not terminate
    # another name under the listener's *.example.com goes to the route without hostnames
    assert await _read_line(rig.passthrough, _trusting(rig.certs["other"]), "other.example.com") == "other"


async def test_a_tls_route_without_backend_closes_its_connections(rig: Rig) -> None:
    """Not the catch-all route's backend: the spec asks to reject the connection."""
    with pytest.raises((OSError, asyncio.IncompleteReadError)):
        await _read_line(rig.passthrough, _trusting(rig.certs["other"]), "broken.example.com")


async def test_tcp_route_spreads_connections_by_weight(rig: Rig) -> None:
    seen = Counter([await _read_line(rig.tcp) for _ in range(80)])
    assert set(seen) == {"db-main", "db-replica"}, seen
    assert seen["db-main"] > seen["db-replica"], seen  # weights 3:1
