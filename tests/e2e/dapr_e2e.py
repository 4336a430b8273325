"""A small Dapr mesh for the Dapr end-to-end tests: control plane, test apps, one capability service and one
real Envoy per app (module name is unique: tests/ folders are not packages).

Each app is reached by its capability service through its own proxy's inbound listener (delivery goes
app <- B's Envoy <- B's capability service), and every capability service watches the control plane for
Dapr Components (`mecha apply`). The Istio side (ServiceEntry/WorkloadGroup per app) is written to a watched
folder; tests push more with `mecha apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from xds.cli.main import main as mecha
from xds.controlplane.auth import read_token
from xds.demo.config import NAMESPACE, SERVICE_PORT, DemoLayout, DemoProxy, DemoWorkload
from xds.runner.procs import Child
from xds.runner.stack import Stack, StackOptions
from xds.testing.envoy import free_port

HERE = Path(__file__).parent
TEST_APP = HERE / "dapr_testapp.py"


class PortPool:
    """Distinct free ports (bind-0 ports can repeat once released)."""

    def __call__(self, _role: str = "", _index: int = 0) -> int:
        return free_port()


@dataclass
class AppSpec:
    """One app of the test mesh: by default the HTTP test app; `argv` replaces it (gets the app port)."""

    service: str
    argv: Callable[[int], list[str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    capabilities_env: dict[str, str] = field(default_factory=dict)
    http_ready: bool = True  # wait for GET /healthz; else for the TCP port
    via_proxy: bool = True  # the capability service reaches the app through its proxy's inbound listener


def component(name: str, type_: str, metadata: dict[str, str], scopes: list[str] | None = None) -> dict:
    """A Dapr Component document (namespace default)."""
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": type_,
            "version": "v1",
            "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
        },
    }
    if scopes:
        doc["scopes"] = scopes
    return doc


def make_dapr_layout(specs: list[AppSpec], ports: PortPool) -> DemoLayout:
    proxies = []
    for spec in specs:
        w = DemoWorkload(spec.service, "v1", app_port=ports(), inbound_port=ports())
        proxies.append(
            DemoProxy(
                id=w.name,
                mode="sidecar",
                admin_port=ports(),
                outbound_port=ports(),
                workloads=(w,),
                dapr_http_port=ports(),
                dapr_grpc_port=ports(),
                capabilities_http_port=ports(),
                capabilities_grpc_port=ports(),
            )
        )
    return DemoLayout(mode="sidecar", proxies=tuple(proxies))


def mesh_documents(layout: DemoLayout) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for w in layout.workloads:
        meta = {"name": w.service, "namespace": NAMESPACE}
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": meta,
                "spec": {
                    "hosts": [w.service],
                    "location": "MESH_INTERNAL",
                    "resolution": "STATIC",
                    "ports": [{"number": SERVICE_PORT, "name": "http", "protocol": "HTTP"}],
                    "workloadSelector": {"labels": {"app": w.service}},
                },
            }
        )
        if layout.mode != "sidecar":  # a node proxy names no group: static entries, as in the demo
            docs.append(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "WorkloadEntry",
                    "metadata": {"name": w.name, "namespace": NAMESPACE},
                    "spec": {"address": "127.0.0.1", "ports": {"http": w.inbound_port}, "labels": w.labels},
                }
            )
            continue
        # each sidecar registers its own WorkloadEntry in its group when it connects (its node metadata names
        # the group, as in the demo: xds/demo/config.py); the entry's port is the proxy's inbound listener
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadGroup",
                "metadata": {"name": w.name, "namespace": NAMESPACE},
                "spec": {"metadata": {"labels": w.labels}, "template": {"ports": {"http": SERVICE_PORT}}},
            }
        )
    return docs


class DaprStack(Stack):
    """The runner's Stack with test apps and per-app capability-service settings."""

    def __init__(self, options: StackOptions, specs: list[AppSpec]) -> None:
        super().__init__(options)
        self.specs = {s.service: s for s in specs}
        self.capabilities: dict[str, Child] = {}

    def proxy(self, service: str) -> DemoProxy:
        return self.o.layout.proxy_of(f"{service}-v1")

    async def _start_apps(self, deadline: float) -> None:
        started = []
        for w in self.o.layout.workloads:
            spec = self.specs[w.service]
            argv = spec.argv(w.app_port) if spec.argv else [sys.executable, str(TEST_APP), w.service]
            if not spec.argv:
                argv += ["--port", str(w.app_port)]
            child = Child(w.name, "app", argv, self.logs / f"{w.name}.log")
            started.append((w, spec, await self.sup.start(child, env=spec.env)))
        for w, spec, child in started:
            if spec.http_ready:
                await self._wait_http(child, f"http://127.0.0.1:{w.app_port}/healthz", deadline)
            else:
                await wait_tcp(w.app_port, deadline)

    def capabilities_argv(self, p: DemoProxy) -> list[str]:
        app = p.workloads[0]
        spec = self.specs[app.service]
        port = app.inbound_port if spec.via_proxy else app.app_port
        return [sys.executable, "-m", "capabilities", "--app-id", app.service,
                "--dapr-http-port", str(p.capabilities_http_port),
                "--dapr-grpc-port", str(p.capabilities_grpc_port),
                "--control-plane", self.api, "--app-url", f"http://127.0.0.1:{port}",
                "--app-port", str(app.app_port)]  # fmt: skip

    def capabilities_env(self, p: DemoProxy) -> dict[str, str]:
        spec = self.specs[p.workloads[0].service]
        # gRPC InvokeService goes back through this proxy's Dapr HTTP listener (mesh routing, retries).
        return {"MECHA_INVOKE_URL": f"http://127.0.0.1:{p.dapr_http_port}", **spec.capabilities_env,
                "MECHA_CONTROL_PLANE_TOKEN_FILE": str(self.o.state_dir / "dapr-reader-token")}  # fmt: skip

    async def start_capabilities(self, p: DemoProxy, within_s: float = 20.0) -> Child:
        service = p.workloads[0].service
        log = self.logs / f"capabilities-{p.id}.log"
        child = Child(f"capabilities-{p.id}", "capabilities", self.capabilities_argv(p), log)
        await self.sup.start(child, env=self.capabilities_env(p))
        self.capabilities[service] = child
        url = f"http://127.0.0.1:{p.capabilities_http_port}/v1.0/healthz/outbound"
        await self._wait_http(child, url, time.monotonic() + within_s)
        return child

    async def _start_capabilities(self, deadline: float) -> None:
        await asyncio.gather(*(self.start_capabilities(p) for p in self.o.layout.proxies))

    async def kill_capabilities(self, service: str) -> None:
        """SIGKILL (no clean shutdown, no acks) the capability service of `service`."""
        child = self.capabilities[service]
        child.stopped = True
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGKILL)
        await child.proc.wait()


async def wait_tcp(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class DaprMesh:
    """Handle the fixtures yield: ports of each app's Dapr listeners, `mecha apply`, waiting helpers."""

    def __init__(self, stack: DaprStack, tmp: Path) -> None:
        self.stack = stack
        self.tmp = tmp
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    def dapr_http(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.proxy(service).dapr_http_port}"

    def dapr_grpc_port(self, service: str) -> int:
        return self.stack.proxy(service).dapr_grpc_port

    def app(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.proxy(service).workloads[0].app_port}"

    async def apply(self, docs: list[dict[str, Any]], name: str = "applied") -> None:
        """`mecha apply -f` a YAML file of these documents; raise with the CLI's output on refusal."""
        path = self.tmp / f"{name}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        out = io.StringIO()

        def run() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                return mecha(["apply", "-f", str(path), "--server", self.stack.api, "--token", token])

        token = read_token(self.stack.o.state_dir) or ""

        rc = await asyncio.to_thread(run)
        assert rc == 0, f"mecha apply refused {path}:\n{out.getvalue()}"

    async def wait_components(self, service: str, names: set[str], within_s: float = 20.0) -> None:
        """Until the capability service behind `service`'s Envoy lists these components (metadata API)."""
        deadline = time.monotonic() + within_s
        seen: set[str] = set()
        while time.monotonic() < deadline:
            async with self.session.get(self.dapr_http(service) + "/v1.0/metadata") as resp:
                meta = await resp.json()
            seen = {c["name"] for c in meta.get("components", [])}
            if names <= seen:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{service}: components {sorted(names - seen)} never loaded (has {seen})")

    async def received(self, service: str) -> list[dict[str, Any]]:
        async with self.session.get(self.app(service) + "/received") as resp:
            return list(await resp.json())

    async def wait_received(
        self, service: str, done: Callable[[list[dict[str, Any]]], bool], within_s: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within_s
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = await self.received(service)
            if done(rows):
                return rows
            await asyncio.sleep(0.1)
        raise AssertionError(f"{service}: deliveries never matched; got {rows[-20:]}")

    async def close(self) -> None:
        await self.session.close()


async def start_dapr_mesh(
    specs: list[AppSpec], tmp: Path, control_plane_env: dict[str, str] | None = None
) -> DaprMesh:
    ports = PortPool()
    layout = make_dapr_layout(specs, ports)
    config = tmp / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "mesh.yaml").write_text(yaml.safe_dump_all(mesh_documents(layout), sort_keys=False))
    options = StackOptions(
        layout=layout,
        state_dir=tmp / "state",
        api_port=ports(),
        xds_port=ports(),
        config_dir=config,
        register=True,  # mesh_documents() declares a WorkloadGroup per sidecar: they register in it
        watch_interval=0.2,
        extra_env=dict(control_plane_env or {}),
    )
    stack = DaprStack(options, specs)
    try:
        await stack.start(90)
    except BaseException:
        await stack.stop()
        raise
    return DaprMesh(stack, tmp)


async def stop_dapr_mesh(mesh: DaprMesh) -> None:
    await mesh.close()
    await mesh.stack.stop()
    survivors = [c.name for c in mesh.stack.sup.children if c.exited is None]
    assert not survivors, f"children survived teardown: {survivors}"


def require_server(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip (or fail under CI=true) when a backing server does not answer; the reason names it."""
    import pytest

    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not answering on {host}:{port}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: backing servers are required)")
        pytest.skip(message)
