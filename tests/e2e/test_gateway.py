"""An ingress gateway (a real Envoy in gateway mode) in front of the demo mesh: HTTP routes, HTTPS with a
certificate from files or over SDS (credentialName), httpsRedirect (301) and a TCP route, all configured from
Gateway + VirtualService."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from e2e_mesh import Mesh, through_agent

from xds.demo.config import make_layout
from xds.runner.stack import Stack, StackOptions
from xds.testing.certs import self_signed
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
SECURE_HOST = "secure.example.com"
CRED_HOST = "cred.example.com"  # HTTPS with credentialName: SDS secret kubernetes://web-cred
CRED_NAME = "web-cred"


class _Ports:
    def __call__(self, _role: str = "", _index: int = 0) -> int:
        return free_port()


def gateway_yaml(cert: Path, key: Path) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: 81, name: http-redirect, protocol: HTTP}}
    hosts: ["*"]
    tls: {{httpsRedirect: true}}
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: ["{SECURE_HOST}"]
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
  - port: {{number: 8443, name: https-cred, protocol: HTTPS}}
    hosts: ["{CRED_HOST}"]
    tls: {{mode: SIMPLE, credentialName: {CRED_NAME}}}
  - port: {{number: 8444, name: https-absent, protocol: HTTPS}}
    hosts: ["absent.example.com"]
    tls: {{mode: SIMPLE, credentialName: no-such-credential}}
  - port: {{number: 9000, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["bookinfo.example.com", "{SECURE_HOST}", "{CRED_HOST}"]
  gateways: [ingress]
  http:
  - match: [{{uri: {{prefix: /reviews}}}}]
    route: [{{destination: {{host: reviews, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: raw-tcp, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [ingress]
  tcp:
  - match: [{{port: 9000}}]
    route: [{{destination: {{host: ratings, port: {{number: 9080}}}}}}]
"""


class GatewayMesh:
    def __init__(
        self, mesh: Mesh, envoy: EnvoyProcess, ports: dict[int, int], cert: Path, cred_cert: Path
    ) -> None:
        self.mesh, self.envoy, self.ports, self.cert = mesh, envoy, ports, cert
        self.cred_cert = cred_cert


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayMesh]:
    ports = _Ports()
    layout = make_layout("sidecar", ports)
    state = tmp_path_factory.mktemp("gateway-mesh")
    stack = Stack(
        StackOptions(
            layout=layout,
            state_dir=state,
            api_port=ports(),
            xds_port=ports(),
            watch_interval=0.2,
            with_capabilities=False,
        )
    )
    envoy: EnvoyProcess | None = None
    mesh: Mesh | None = None
    try:
        await stack.start(60)
        mesh = Mesh(stack, layout, False)
        cert, key = self_signed(state, SECURE_HOST)
        # the control plane's default credentials folder: <config dir>/credentials/<name>/tls.crt, tls.key
        cred_folder = stack.config_dir / "credentials" / CRED_NAME
        cred_folder.mkdir(parents=True)
        cred_cert, _cred_key = self_signed(cred_folder, CRED_HOST)
        (state / "gateway.yaml").write_text(gateway_yaml(cert, key))
        rc, out = await mesh.cli("apply", "-f", str(state / "gateway.yaml"))
        assert rc == 0, out
        bound = {80: ports(), 81: ports(), 443: ports(), 8443: ports(), 8444: ports(), 9000: ports()}
        meta = {
            "mode": "gateway",
            "namespace": "istio-system",
            "labels": {"istio": "ingressgateway"},
            "gateway_ports": {str(k): v for k, v in bound.items()},
        }
        text, _admin = bootstrap_for("ingress-gateway", stack.o.xds_port, meta)
        text = await through_agent(stack, "ingress-gateway", meta, text)  # the xDS port wants a credential
        envoy = EnvoyProcess(text, state / "gateway-envoy", name="ingress-gateway")
        await envoy.start(wait_ready=True, timeout=20)
        await stack.wait_synced(["ingress-gateway"], time.monotonic() + 20)
        yield GatewayMesh(mesh, envoy, bound, cert, cred_cert)
    finally:
        if envoy is not None:
            await envoy.stop()
        if mesh is not None:
            await mesh.close()
        await stack.stop()


async def get(url: str, host: str, **kw: Any) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        async with s.get(url, headers={"Host": host}, allow_redirects=False, **kw) as resp:
            return resp.status, dict(resp.headers), await resp.text()


async def test_listeners_and_routes_follow_istiod_names(gw: GatewayMesh) -> None:
    status, body = await gw.envoy.admin_get("/config_dump?resource=dynamic_route_configs")
    assert status == 200
    for name in (f"http.{gw.ports[80]}", f"https.{gw.ports[443]}.https.ingress.default"):
        assert f'"name": "{name}"' in body
    assert '"name": "bookinfo.example.com:80"' in body


async def test_http_route_carries_traffic(gw: GatewayMesh) -> None:
    status, _h, text = await get(f"http://127.0.0.1:{gw.ports[80]}/reviews", "bookinfo.example.com")
    assert status == 200 and '"app": "reviews"' in text and '"version": "v1"' in text
    status, _h, _t = await get(f"http://127.0.0.1:{gw.ports[80]}/reviews", "unknown.example.com")
    assert status == 404


async def test_https_with_a_file_certificate(gw: GatewayMesh) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.cert))
    url = f"https://127.0.0.1:{gw.ports[443]}/reviews"
    status, _h, text = await get(url, SECURE_HOST, ssl=ctx, server_hostname=SECURE_HOST)
    assert status == 200 and '"app": "reviews"' in text


async def test_https_with_a_credential_over_sds(gw: GatewayMesh) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.cred_cert))
    url = f"https://127.0.0.1:{gw.ports[8443]}/reviews"
    status, _h, text = await get(url, CRED_HOST, ssl=ctx, server_hostname=CRED_HOST)
    assert status == 200 and '"app": "reviews"' in text
    # the served certificate is the one the test wrote into the credentials folder
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.ports[8443], ssl=ctx, server_hostname=CRED_HOST
    )
    served = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    written = x509.load_pem_x509_certificate(gw.cred_cert.read_bytes())
    assert served == written.public_bytes(serialization.Encoding.DER)
    status, body = await gw.envoy.admin_get("/config_dump?resource=dynamic_active_secrets")
    assert status == 200 and f'"name": "kubernetes://{CRED_NAME}"' in body


async def test_missing_credential_skips_only_its_server(gw: GatewayMesh) -> None:
    status, body = await gw.envoy.admin_get("/config_dump?resource=dynamic_listeners")
    assert status == 200
    assert f'"name": "0.0.0.0_{gw.ports[8443]}"' in body
    assert f'"name": "0.0.0.0_{gw.ports[8444]}"' not in body  # its server was skipped (error logged)


async def test_https_redirect_answers_301(gw: GatewayMesh) -> None:
    status, headers, _t = await get(f"http://127.0.0.1:{gw.ports[81]}/reviews", "bookinfo.example.com")
    assert status == 301
    assert headers["Location"].startswith("https://bookinfo.example.com")


async def test_tcp_route_carries_bytes(gw: GatewayMesh) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.ports[9000])
    writer.write(b"GET /ratings HTTP/1.1\r\nHost: ratings\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and b'"app": "ratings"' in data


async def _served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=CRED_HOST)
    served = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(served)


async def test_a_renewed_credential_is_served_without_a_config_change(gw: GatewayMesh) -> None:
    # last in this module: the credential it renews is the one the SDS test above checks
    folder = gw.cred_cert.parent
    before = await _served_certificate(gw.ports[8443])
    renewed, _key = self_signed(folder, CRED_HOST)  # what cert-manager does on renewal
    expected = x509.load_pem_x509_certificate(renewed.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert expected != before
    deadline = time.monotonic() + 15
    while (served := await _served_certificate(gw.ports[8443])) != expected:
        assert time.monotonic() < deadline, "the gateway kept serving the old certificate"
        await asyncio.sleep(0.2)
    assert served == expected
