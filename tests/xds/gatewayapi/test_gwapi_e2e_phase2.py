"""Gateway API phase 2 through a real gateway Envoy: ReferenceGrant, a namespace-selector listener and a
GRPCRoute next to an HTTPRoute on the same listener, against small local HTTP and gRPC backends registered
by ServiceEntries. The Envoy is a gateway-mode proxy whose node metadata names the Gateway.

Attacker cases: a route in namespace `a` naming a Service of namespace `b` with no grant there (only a grant
in the wrong namespace) gets 500s and `b` never sees a request; a route of an unlabeled namespace never
attaches to the selector listener (404)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from gwapi_helpers import namespace_doc, reference_grant, selector_gateway

from xds.testing.envoy import EnvoyProcess, free_port
from xds.testing.gateway import answers_200, gateway_envoy, serve_http, service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
HTTP_HOST = "shop.example.com"
GRPC_HOST = "grpc.example.com"
SERVICE = "mecha.test.Echo"


def config_yaml(http: dict[str, tuple[str, int]], grpc_ports: dict[str, int]) -> str:
    entries = "".join(service_entry(name, ns, port, "HTTP") for name, (ns, port) in http.items())
    entries += "".join(service_entry(name, "a", port, "GRPC") for name, port in grpc_ports.items())
    route = "{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: a}"
    return (
        entries
        + namespace_doc("a", '{gateway-access: "yes"}')
        + namespace_doc("evil")
        + selector_gateway('{matchLabels: {gateway-access: "yes"}}')
        + f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: a}}
spec:
  parentRefs: [{{name: web, namespace: infra}}]
  hostnames: [{HTTP_HOST}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /local}}}}]
    backendRefs: [{{name: app, port: 8080}}]
  - matches: [{{path: {{type: PathPrefix, value: /steal}}}}]
    backendRefs: [{{name: secret, namespace: b, port: 8080}}]
  - matches: [{{path: {{type: PathPrefix, value: /granted}}}}]
    backendRefs: [{{name: shared, namespace: c, port: 8080}}]
---
"""
        + reference_grant("a", route, '{group: "", kind: Service, name: secret}', name="wrong-namespace")
        + reference_grant("c", route, '{group: "", kind: Service, name: shared}', "v1", "shop-routes")
        + f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: intruder, namespace: evil}}
spec:
  parentRefs: [{{name: web, namespace: infra}}]
  hostnames: [evil.example.com]
  rules: [{{backendRefs: [{{name: secret, namespace: b, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo, namespace: a}}
spec:
  parentRefs: [{{name: web, namespace: infra}}]
  hostnames: [{GRPC_HOST}]
  rules:
  - matches: [{{method: {{service: {SERVICE}, method: Echo}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-gateway, value: mecha}}]}}
    backendRefs: [{{name: grpc-v1, port: 8080}}]
  - matches: [{{method: {{service: {SERVICE}, method: EchoTwo}}}}]
    backendRefs: [{{name: grpc-v2, port: 8080}}]
  - matches:
    - method: {{type: RegularExpression, service: 'mecha\\.test\\..*', method: 'Echo.*'}}
      headers: [{{name: version, value: two}}]
    backendRefs: [{{name: grpc-v2, port: 8080}}]
"""
    )


@dataclass
class Rig:
    port: int  # the gateway listener's bound port (Gateway listener port 80)
    envoy: EnvoyProcess
    session: aiohttp.ClientSession
    channel: grpc.aio.Channel
    hits: Counter[str] = field(default_factory=Counter)  # backend name -> requests it received

    async def get(self, path: str, host: str = HTTP_HOST) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with self.session.get(url, headers={"Host": host}) as resp:
            return resp.status, await resp.text()

    async def call(self, method: str, **metadata: str) -> dict[str, Any]:
        rpc = self.channel.unary_unary(f"/{SERVICE}/{method}")
        answer = await rpc(b"ping", metadata=tuple(metadata.items()), timeout=5)
        found: dict[str, Any] = json.loads(answer)
        return found


async def _http_backend(name: str, port: int, hits: Counter[str]) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        hits[name] += 1
        return web.json_response({"backend": name, "path": request.path_qs})

    return await serve_http(port, handle)


async def _grpc_backend(name: str, port: int) -> grpc.aio.Server:
    """A gRPC server without generated code: raw-bytes handlers answering JSON (backend, method, metadata)."""

    def handler(method: str) -> grpc.RpcMethodHandler:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            return json.dumps({"backend": name, "method": method, "metadata": metadata}).encode()

        return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.aio.server()
    methods = {m: handler(m) for m in ("Echo", "EchoTwo", "EchoThree")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    hits: Counter[str] = Counter()
    http = {"app": ("a", free_port()), "secret": ("b", free_port()), "shared": ("c", free_port())}
    grpc_ports = {"grpc-v1": free_port(), "grpc-v2": free_port()}
    runners = [await _http_backend(name, port, hits) for name, (_ns, port) in http.items()]
    servers = [await _grpc_backend(name, port) for name, port in grpc_ports.items()]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    channel: grpc.aio.Channel | None = None
    try:
        async with gateway_envoy(
            config_yaml(http, grpc_ports),
            "infra/web",
            tmp_path_factory.mktemp("gateway-api-2"),
            # until the listener and its routes arrived
            ready=lambda gw: answers_200(session, gw.port(), "/local", HTTP_HOST),
        ) as gateway:
            # h2c with prior knowledge, as gRPC clients speak to a plain-text HTTP listener
            options = [("grpc.default_authority", GRPC_HOST)]
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port()}", options=options)
            yield Rig(gateway.port(), gateway.envoy, session, channel, hits)
    finally:
        if channel is not None:
            await channel.close()
        await session.close()
        for runner in runners:
            await runner.cleanup()
        for grpc_server in servers:
            await grpc_server.stop(0)


async def test_a_same_namespace_backend_is_served(rig: Rig) -> None:
    status, text = await rig.get("/local/items")
    assert status == 200 and json.loads(text)["backend"] == "app"


async def test_a_granted_cross_namespace_backend_is_served(rig: Rig) -> None:
    status, text = await rig.get("/granted")
    assert status == 200 and json.loads(text)["backend"] == "shared"


async def test_no_grant_in_the_target_namespace_means_500_and_no_traffic(rig: Rig) -> None:
    """Attacker: route in a -> Service secret in b, with a grant only in a (the wrong namespace)."""
    for _ in range(5):
        status, _text = await rig.get("/steal")
        assert status == 500
    assert rig.hits["secret"] == 0


async def test_a_route_of_an_unselected_namespace_is_not_served(rig: Rig) -> None:
    status, _text = await rig.get("/", host="evil.example.com")
    assert status == 404
    assert rig.hits["secret"] == 0


async def test_grpc_calls_are_routed_by_method(rig: Rig) -> None:
    first = await rig.call("Echo")
    assert first["backend"] == "grpc-v1" and first["method"] == "Echo"
    assert first["metadata"]["x-gateway"] == "mecha"  # the rule's RequestHeaderModifier
    second = await rig.call("EchoTwo")
    assert second["backend"] == "grpc-v2" and "x-gateway" not in second["metadata"]


async def test_grpc_header_and_regex_match(rig: Rig) -> None:
    """Exact service/method matches outrank the regex one; a method only the regex covers goes there
    when the header matches."""
    assert (await rig.call("Echo", version="two"))["backend"] == "grpc-v1"
    assert (await rig.call("EchoThree", version="two"))["backend"] == "grpc-v2"


async def test_a_method_no_rule_matches_is_unimplemented(rig: Rig) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rig.call("EchoThree")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_http_and_grpc_routes_share_the_listener(rig: Rig) -> None:
    """The HTTPRoute's host answers HTTP; the GRPCRoute's host is not served HTTP routes (404)."""
    assert (await rig.get("/local"))[0] == 200
    assert (await rig.get("/local", host=GRPC_HOST))[0] == 404
