"""BackendTLSPolicy through a real gateway Envoy: an HTTPRoute's backend speaks TLS; the policy's ConfigMap
CA and hostname make the gateway verify it (SNI = the hostname, the certificate must carry it).

Attacker cases: an impostor backend presenting a certificate for the right name from another CA gets no
request (the handshake fails, the client gets a 5xx); a certificate for another name is refused; a policy
whose ConfigMap is missing fails its connections (5xx): never an unverified connection."""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from gwapi_helpers import self_signed

from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.gateway import answers_200, gateway_envoy, serve_http, service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NAME = "api.example.com"


def _policy(name: str, service: str, validation: str) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1alpha3
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: infra}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {service}}}]
  validation: {validation}
---
"""


def config(ca_pem: str) -> str:
    indented = "".join(f"    {line}\n" for line in ca_pem.strip().splitlines())
    rules = "".join(
        f"  - matches: [{{path: {{type: PathPrefix, value: /{s}}}}}]\n"
        f"    backendRefs: [{{name: {s}, port: 9000}}]\n"
        for s in ("good", "impostor", "wrong-name", "no-ca")
    )
    ca = '{caCertificateRefs: [{group: "", kind: ConfigMap, name: backend-ca}], hostname: HOST}'
    return (
        f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: infra}}
data:
  ca.crt: |
{indented}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: infra}}
spec:
  gatewayClassName: mecha
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api, namespace: infra}}
spec:
  parentRefs: [{{name: edge}}]
  rules:
{rules}---
"""
        + _policy("good", "good", ca.replace("HOST", NAME))
        + _policy("impostor", "impostor", ca.replace("HOST", NAME))
        + _policy("wrong-name", "wrong-name", ca.replace("HOST", "other.example.com"))
        + _policy("no-ca", "no-ca", ca.replace("backend-ca", "missing").replace("HOST", NAME))
    )


@dataclass
class Rig:
    port: int
    session: aiohttp.ClientSession
    envoy: EnvoyProcess
    hits: Counter[str] = field(default_factory=Counter)  # backend -> requests it answered
    sni: list[str] = field(default_factory=list)  # server names the real backend was asked for

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"http://127.0.0.1:{self.port}{path}") as resp:
            return resp.status, await resp.text()


async def _tls_backend(
    name: str, port: int, folder: Path, rig_hits: Counter[str], sni: list[str]
) -> web.AppRunner:
    async def handle(_request: web.Request) -> web.Response:
        rig_hits[name] += 1
        return web.Response(text=name)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "tls.crt", folder / "tls.key")
    ctx.sni_callback = lambda _sock, server_name, _ctx: sni.append(f"{name}:{server_name}") and None
    return await serve_http(port, handle, ctx)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    folder = tmp_path_factory.mktemp("backend-certs")
    real = self_signed(folder / "real", NAME)  # its own CA: the ConfigMap's ca.crt
    self_signed(folder / "impostor", NAME)  # the right name, another CA
    hits: Counter[str] = Counter()
    sni: list[str] = []
    ports = {n: free_port() for n in ("good", "impostor", "wrong-name", "no-ca")}
    certs = {"good": "real", "impostor": "impostor", "wrong-name": "real", "no-ca": "real"}
    runners = [await _tls_backend(n, p, folder / certs[n], hits, sni) for n, p in ports.items()]
    entries = "".join(service_entry(n, "infra", p, "HTTP", number=9000) for n, p in ports.items())
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        async with gateway_envoy(
            entries + config(real.decode()),
            "infra/edge",
            tmp_path_factory.mktemp("gateway-api-btls"),
            ready=lambda gw: answers_200(session, gw.port(), "/good"),
        ) as gateway:
            yield Rig(gateway.port(), session, gateway.envoy, hits, sni)
    finally:
        await session.close()
        for runner in runners:
            await runner.cleanup()


async def test_the_gateway_verifies_the_backend_with_the_policy_ca_and_hostname(rig: Rig) -> None:
    assert await rig.get("/good") == (200, "good")
    assert f"good:{NAME}" in rig.sni  # the policy's hostname is the SNI


async def test_an_impostor_with_another_ca_gets_no_request(rig: Rig) -> None:
    status, _ = await rig.get("/impostor")
    assert status >= 500 and rig.hits["impostor"] == 0


async def test_a_certificate_without_the_policy_hostname_is_refused(rig: Rig) -> None:
    status, _ = await rig.get("/wrong-name")
    assert status >= 500 and rig.hits["wrong-name"] == 0


async def test_a_policy_without_a_valid_ca_fails_its_connections(rig: Rig) -> None:
    status, _ = await rig.get("/no-ca")
    assert status >= 500 and rig.hits["no-ca"] == 0
