"""BackendTLSPolicy through a real gateway Envoy: an HTTPRoute's backend speaks TLS; the policy's ConfigMap
CA and hostname make the gateway verify it (SNI = the hostname, the certificate must carry it).

Attacker cases: an impostor backend presenting a certificate for the right name from another CA gets no
request (the handshake fails, the client gets a 5xx); a certificate for another name is refused; a policy
whose ConfigMap is missing fails its connections (5xx): never an unverified connection."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from gwapi_helpers import self_signed

from xds.cache import SnapshotCache
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
NAME = "api.example.com"


def _entry(name: str, port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: infra}}
spec:
  hosts: [{name}.infra.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
"""


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
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    return runner


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
    text = "".join(_entry(n, p) for n, p in ports.items()) + config(real.decode())
    docs, diags = load_text(text, "gateway-api.yaml")
    result = compile_documents(docs)
    assert not diags and result.config is not None, [str(d) for d in result.errors]
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    bound = free_port()
    meta = {
        "mode": "gateway",
        "namespace": "infra",
        "gateways": ["infra/edge"],
        "gateway_ports": {"80": bound},
    }
    proxy = ProxyIdentity.from_node("gateway", {"mecha": meta})
    cache.set_snapshot("gateway", SnapshotBuilder().build(result.config, [proxy])["gateway"])
    bootstrap, _admin = bootstrap_for("gateway", xds_port, meta, initial_fetch_timeout_s=0.5)
    envoy = EnvoyProcess(bootstrap, tmp_path_factory.mktemp("gateway-api-btls"), name="gateway")
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        await envoy.start(timeout=20)
        rig = Rig(bound, session, envoy, hits, sni)
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await rig.get("/good"))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, envoy.log_tail()
            await asyncio.sleep(0.1)
        yield rig
    finally:
        await session.close()
        await envoy.stop()
        await server.stop(0)
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
