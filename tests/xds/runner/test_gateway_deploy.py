"""Gateway API gateways under `mecha up` (xds/runner/gateways.py): a Gateway applied at runtime gets its own
gateway Envoy (with its agent), its listener port 80 bound as Istio's charts map it (8080, or the next free
port), the bound address printed and shown in the Gateway's status.addresses; a request there reaches the
backend of its HTTPRoute; deleting the Gateway stops its Envoy. Plus the class rule and the port mapping."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from xds.cli.client import Client
from xds.demo.config import DemoLayout
from xds.runner.gateways import GatewayDeployer, Wanted, bound_port, mecha_gateways
from xds.runner.procs import port_in_use
from xds.runner.stack import Stack, StackOptions
from xds.runner.up import gateway_api_lines
from xds.testing.envoy import free_port
from xds.testing.gateway import poll_until, serve_http

ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"""
GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: shop.example.com}
"""
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /catalog}}]
    backendRefs: [{name: echo, port: 8080}]
"""


def _doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "gateway.networking.k8s.io/v1", "namespace": namespace, "name": name,
            "body": {"spec": spec}}  # fmt: skip


def test_the_class_rule_is_the_control_planes() -> None:
    listeners = [{"name": "a", "port": 80}, {"name": "b", "port": 8443}, {"name": "c", "port": 80}]
    docs = [
        _doc("Gateway", "a", {"gatewayClassName": "mecha", "listeners": listeners}),
        _doc("Gateway", "b", {"gatewayClassName": "istio", "listeners": []}),
        _doc("Gateway", "c", {"gatewayClassName": "other", "listeners": listeners}),
        _doc("Gateway", "d", {"gatewayClassName": "mine", "listeners": listeners}),
        _doc("GatewayClass", "mine", {"controllerName": "mecha.io/gateway-controller"}, ""),
        _doc("GatewayClass", "istio", {"controllerName": "example.com/not-istio"}, ""),  # overrides built-in
        _doc("Gateway", "Bad_Name", {"gatewayClassName": "mecha", "listeners": listeners}),
        {**_doc("Gateway", "e", {"gatewayClassName": "mecha"}), "apiVersion": "networking.istio.io/v1"},
    ]
    wanted, skipped = mecha_gateways(docs)
    assert wanted == [Wanted("default", "a", "mecha", (80, 8443)), Wanted("default", "d", "mine", (80, 8443))]
    assert wanted[0].proxy_id == "a-mecha.default"  # istiod's Deployment name <name>-<class>
    assert skipped == ["Gateway default/Bad_Name: no gateway Envoy for a name that is not a DNS name"]


def test_privileged_ports_move_up_by_8000_and_all_shift_with_the_offset() -> None:
    assert [bound_port(p) for p in (80, 443, 1023, 1024, 8080, 9000)] == [8080, 8443, 9023, 1024, 8080, 9000]
    assert bound_port(80, 100) == 8180 and bound_port(9000, 100) == 9100


class _Stack:
    """What GatewayDeployer._allocate reads of its Stack."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports

    def all_ports(self) -> dict[str, int]:
        return self.ports


def test_a_taken_port_becomes_the_next_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        offset = port - 8080  # listener 80 would bind exactly the busy port
        deployer = GatewayDeployer(_Stack({"api": port + 1}), offset)  # type: ignore[arg-type]
        found = deployer._allocate(Wanted("default", "web", "mecha", (80,)))
    assert found[80] > port + 1  # neither the busy port nor the stack's own


def test_the_summary_lists_each_gateway() -> None:
    lines = gateway_api_lines(
        {
            "default/web": {
                "proxy": "web-istio.default",
                "listeners": {"80": "127.0.0.1:8080"},
                "class": "istio",
            }
        }
    )
    assert lines[1].split() == ["default/web", "80", "->", "127.0.0.1:8080", "(proxy", "web-istio.default)"]
    assert gateway_api_lines({}) == []


# ---- end to end: a Stack with no demo apps, real control plane, agents and Envoys ------------------------
@dataclass
class Rig:
    stack: Stack
    client: Client
    lines: list[str]
    session: aiohttp.ClientSession

    async def said(self, needle: str, within: float = 60.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if needle in line), None)
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{needle!r} not reported:\n" + "\n".join(self.lines))

    async def status_of_web(self) -> dict[str, Any]:
        found = await asyncio.to_thread(self.client.get, "/api/v1/gateway-api/status?kind=gateways")
        return next(i for i in found["items"] if i["metadata"]["name"] == "web")["status"]


async def _echo(port: int) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path_qs, "host": request.host})

    return await serve_http(port, handle)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    backend = free_port()
    echo = await _echo(backend)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "echo.yaml").write_text(ENTRY.format(port=backend))
    lines: list[str] = []
    options = StackOptions(
        layout=DemoLayout(mode="sidecar", proxies=()), state_dir=tmp_path / "state", api_port=free_port(),
        xds_port=free_port(), config_dir=tmp_path / "cfg", with_capabilities=False, deploy_gateways=True,
    )  # fmt: skip
    stack = Stack(options, report=lines.append)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    stop = asyncio.Event()
    try:
        await stack.start(60)
        assert stack.gateways is not None
        follow = asyncio.create_task(stack.gateways.run(stop))
        token = (tmp_path / "state" / "api-token").read_text().strip()
        yield Rig(stack, Client(stack.api, token), lines, session)
        stop.set()
        await follow
    finally:
        await session.close()
        await stack.stop()
        await echo.cleanup()


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_a_gateway_applied_at_runtime_gets_an_envoy_until_it_is_deleted(rig: Rig) -> None:
    files = [{"name": "gw.yaml", "text": GATEWAY + "---\n" + ROUTE}]
    outcome = await asyncio.to_thread(rig.client.post, "/api/v1/apply", {"files": files})
    assert outcome["accepted"], outcome
    line = await rig.said("[ready] gateway default/web")
    address = line.split("listener 80 on ")[1].split()[0].rstrip(",")
    host, port = address.split(":")
    assert host == "127.0.0.1" and (int(port) == 8080 or int(port) > 8080)  # 8080 unless it was taken

    # the control plane shows where it is bound, from the connected Envoy's node metadata
    status = await rig.status_of_web()
    assert status["addresses"] == [
        {"type": "IPAddress", "value": "127.0.0.1"}, {"type": "mecha.io/HostPort", "value": address}
    ]  # fmt: skip
    assert rig.stack.gateways is not None
    assert rig.stack.gateways.describe()["default/web"]["listeners"] == {"80": address}

    # a request to the printed address reaches the HTTPRoute's backend
    async def reached() -> bool:
        url = f"http://{address}/catalog/shoes"
        async with rig.session.get(url, headers={"Host": "shop.example.com"}) as r:
            if r.status != 200:
                return False
            assert json.loads(await r.text())["path"] == "/catalog/shoes"
            return True

    await poll_until(reached, 20, lambda: "the gateway Envoy never answered 200", interval=0.2)
    envoy = next(c for c in rig.stack.sup.children if c.name == "envoy-web-istio.default")
    agent = next(c for c in rig.stack.sup.children if c.name == "agent-web-istio.default")

    # deleting the Gateway stops its Envoy and its agent; the port is free again
    outcome = await asyncio.to_thread(
        rig.client.post, "/api/v1/delete", {"files": [{"name": "gw.yaml", "text": GATEWAY}]}
    )
    assert outcome["accepted"], outcome
    await rig.said("stopped the gateway Envoy of Gateway default/web: deleted")
    assert envoy.exited is not None and agent.exited is not None
    assert envoy not in rig.stack.sup.children and agent not in rig.stack.sup.children
    assert not port_in_use(int(port))
    assert rig.stack.gateways.describe() == {}


HTTPS_GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    tls: {certificateRefs: [{name: shop-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: web}]
  rules: [{backendRefs: [{name: echo, port: 8080}]}]
"""


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_https_from_a_secret_document_in_the_watched_folder(rig: Rig, tmp_path: Path) -> None:
    """Issue #20: HTTPS termination from a Kubernetes Secret document in the config folder, through the
    gateway Envoy `mecha up` starts: the client trusts only the Secret's self-signed certificate (so the
    handshake proves the listener serves it, for the listener's hostname) and reaches the route's backend."""
    import base64
    import ssl

    from xds.testing.certs import self_signed

    cert, key = self_signed(tmp_path / "pem", "shop.example.com", ca=True)
    secret = rig_config(rig) / "shop-cert.yaml"
    secret.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-cert, namespace: default}\n"
        "type: kubernetes.io/tls\ndata:\n"
        f"  tls.crt: {base64.b64encode(cert.read_bytes()).decode()}\n"
        f"  tls.key: {base64.b64encode(key.read_bytes()).decode()}\n"
    )
    secret.chmod(0o600)
    (rig_config(rig) / "gw.yaml").write_text(HTTPS_GATEWAY)
    line = await rig.said("[ready] gateway default/web")
    address = line.split("listener 443 on ")[1].split()[0].rstrip(",")
    context = ssl.create_default_context(cafile=str(cert))

    async def reached() -> bool:
        url = f"https://{address}/catalog"
        try:
            async with rig.session.get(url, headers={"Host": "shop.example.com"}, ssl=context,
                                       server_hostname="shop.example.com") as r:  # fmt: skip
                if r.status != 200:
                    return False
                assert json.loads(await r.text())["path"] == "/catalog"
                return True
        except (aiohttp.ClientConnectionError, ssl.SSLError):
            return False

    await poll_until(
        reached, 30, lambda: "the HTTPS listener never served the Secret's certificate", interval=0.3
    )


def rig_config(rig: Rig) -> Path:
    folder = rig.stack.o.config_dir
    assert folder is not None
    return folder
