"""A gateway-mode Envoy serving one Kubernetes Gateway, for tests: the YAML compiled, served by an in-process
xDS server, a real Envoy whose node metadata names the Gateway and the ports its listeners bind, and a probe
through it polled until the listeners and routes arrived. Plus the small pieces those tests share: local
HTTP backends and the ServiceEntry that registers one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext

import aiohttp
from aiohttp import web

from xds.cache import SnapshotCache
from xds.credential_files import CredentialStore
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.server import XdsServer
from xds.testing.envoy import EnvoyProcess, bootstrap_for, free_port

PROXY_ID = "gateway"


@dataclass
class GatewayEnvoy:
    envoy: EnvoyProcess
    ports: dict[int, int]  # Gateway listener port -> the local port Envoy binds for it

    def port(self, listener: int = 80) -> int:
        return self.ports[listener]


async def poll_until(
    probe: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 - a deadline for many probes, not one call
    failure: Callable[[], str],
    retry_on: tuple[type[BaseException], ...] = (aiohttp.ClientError,),
    interval: float = 0.1,
) -> None:
    """Call probe until it returns True; the errors of retry_on count as "not yet". TimeoutError(failure())
    after timeout seconds; any other error (an assertion inside the probe) propagates at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await probe():
                return
        except retry_on:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(failure())
        await asyncio.sleep(interval)


async def answers_200(session: aiohttp.ClientSession, port: int, path: str, host: str | None = None) -> bool:
    """Whether a plain HTTP GET of path on 127.0.0.1:port (with that Host) answers 200."""
    headers = {"Host": host} if host else {}
    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
        return resp.status == 200


@asynccontextmanager
async def gateway_envoy(
    config_yaml: str,
    gateway: str,
    workdir: Path,
    ready: Callable[[GatewayEnvoy], Awaitable[bool]],
    listener_ports: Iterable[int] = (80,),
    credentials: CredentialStore | None = None,
    retry_on: tuple[type[BaseException], ...] = (aiohttp.ClientError,),
) -> AsyncIterator[GatewayEnvoy]:
    """A gateway Envoy for Gateway `namespace/name` of config_yaml, each listener port bound on a free local
    port; yields once ready(gateway) is True (errors of retry_on mean "not yet"); stops Envoy and the xDS
    server on exit. The config must compile without a diagnostic."""
    docs, diags = load_text(config_yaml, "gateway-api.yaml")
    result = compile_documents(docs)
    if diags or result.config is None:
        raise ValueError(f"the test config does not compile: {[str(d) for d in [*diags, *result.errors]]}")
    namespace = gateway.split("/")[0]
    ports = {port: free_port() for port in listener_ports}
    meta = {
        "mode": "gateway",
        "namespace": namespace,
        "gateways": [gateway],
        "gateway_ports": {str(k): v for k, v in ports.items()},
    }
    cache = SnapshotCache()
    server = XdsServer(cache)
    xds_port = await server.start("127.0.0.1:0")
    proxy = ProxyIdentity.from_node(PROXY_ID, {"mecha": meta})
    builder = SnapshotBuilder(credentials=credentials)
    cache.set_snapshot(PROXY_ID, builder.build(result.config, [proxy])[PROXY_ID])
    bootstrap, _admin = bootstrap_for(PROXY_ID, xds_port, meta, initial_fetch_timeout_s=0.5)
    envoy = EnvoyProcess(bootstrap, workdir, name=PROXY_ID)
    try:
        await envoy.start(timeout=20)
        found = GatewayEnvoy(envoy, ports)
        await poll_until(lambda: ready(found), 20, envoy.log_tail, retry_on)
        yield found
    finally:
        await envoy.stop()
        await server.stop(0)


async def serve_http(
    port: int, handle: Callable[[web.Request], Awaitable[web.StreamResponse]], tls: SSLContext | None = None
) -> web.AppRunner:
    """An aiohttp server on 127.0.0.1:port answering every method and path with handle (over TLS when tls is
    set); the caller cleans the runner up."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    return runner


def service_entry(
    name: str,
    namespace: str,
    port: int,
    protocol: str | None = None,
    number: int = 8080,
    host: str | None = None,
) -> str:
    """A ServiceEntry document (with its `---`) for a backend on 127.0.0.1:port: host (default the Service's
    cluster name) on service port `number`, port name the protocol's (http when none is given)."""
    port_name = protocol.lower() if protocol else "http"
    declared = f", protocol: {protocol}" if protocol else ""
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host or f"{name}.{namespace}.svc.cluster.local"}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {number}, name: {port_name}{declared}}}]
  endpoints: [{{address: 127.0.0.1, ports: {{{port_name}: {port}}}}}]
---
"""
