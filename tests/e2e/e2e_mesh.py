"""The Mesh handle the e2e fixtures yield (module name is unique: tests/ folders are not packages)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from xds.cli.main import main as mecha
from xds.controlplane.auth import read_token
from xds.demo.config import DemoLayout
from xds.runner.stack import Stack


class Mesh:
    def __init__(self, stack: Stack, layout: DemoLayout, delta: bool) -> None:
        self.stack = stack
        self.layout = layout
        self.delta = delta
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @property
    def api(self) -> str:
        return self.stack.api

    @property
    def entry(self) -> str:
        """productpage's proxy outbound listener: where the mesh is entered in tests."""
        return f"http://127.0.0.1:{self.layout.proxy_of('productpage-v1').outbound_port}"

    async def call(self, host: str, path: str = "/", **headers: str) -> tuple[int, Any]:
        """A request into the mesh through productpage's proxy; Host picks the service."""
        hdrs = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
        async with self.session.get(self.entry + path, headers=hdrs) as resp:
            text = await resp.text()
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def versions(self, n: int, concurrency: int = 8, **headers: str) -> Counter[str]:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with sem:
                status, body = await self.call("reviews", "/reviews", **headers)
                return body["version"] if status == 200 else f"HTTP {status}"

        return Counter(await asyncio.gather(*(one() for _ in range(n))))

    async def api_get(self, path: str) -> Any:
        async with self.session.get(self.api + path, headers=self.stack.api_headers()) as resp:
            return await resp.json()

    async def cli(self, *argv: str) -> tuple[int, str]:
        """Run a `mecha` client command against this mesh (blocking client, so in a thread)."""
        out = io.StringIO()

        def run() -> int:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                return mecha([*argv, "--server", self.api, "--token", token])

        token = read_token(self.stack.o.state_dir) or ""

        rc = await asyncio.to_thread(run)
        return rc, out.getvalue()

    async def status_of(self, proxy_id: str) -> dict[str, Any]:
        rows = (await self.api_get("/api/v1/proxies"))["proxies"]
        return next(r for r in rows if r.get("proxy_id") == proxy_id)

    async def close(self) -> None:
        await self.session.close()


@contextlib.asynccontextmanager
async def demo_mesh(
    state_dir: Path, delta: bool, extra_env: dict[str, str] | None = None, with_agents: bool = True
) -> AsyncIterator[Mesh]:
    """The demo mesh (control plane, demo apps, one Envoy each; no capability services), torn down after."""
    from xds.demo.config import make_layout
    from xds.runner.stack import StackOptions
    from xds.testing.envoy import free_port

    layout = make_layout("sidecar", lambda _role="", _index=0: free_port())
    options = StackOptions(
        layout=layout,
        state_dir=state_dir,
        api_port=free_port(),
        xds_port=free_port(),
        delta=delta,
        watch_interval=0.2,
        with_capabilities=False,
        extra_env=dict(extra_env or {}),
        with_agents=with_agents,  # a `mecha agent` per Envoy, TLS xDS with credentials (xds/agent/)
    )
    stack = Stack(options)
    try:
        await stack.start(60)
    except BaseException:
        await stack.stop()
        raise
    mesh = Mesh(stack, layout, delta)
    try:
        yield mesh
    finally:
        await mesh.close()
        await stack.stop()
        assert all(c.exited is not None for c in stack.sup.children), "a child survived teardown"


def demo_yaml_path(mesh: Mesh) -> Path:
    return mesh.stack.config_dir / "demo.yaml"


async def through_agent(stack: Stack, proxy_id: str, metadata: dict[str, Any], bootstrap_yaml: str) -> str:
    """A test's own Envoy (bootstrap rendered by xds.testing.envoy.bootstrap_for) reaches the stack's secure
    xDS port as `mecha up`'s do: through a standalone `mecha agent` with the proxy's credential (supervised by
    the stack); returns the bootstrap that points at the agent's Unix sockets."""
    import time

    from xds.agent.launch import start_beside
    from xds.statedir import write_private_file

    path = write_private_file(stack.o.state_dir / "bootstrap" / f"{proxy_id}.yaml", bootstrap_yaml)
    out = await start_beside(stack.sup, stack.logs, stack.o.state_dir, proxy_id, metadata, stack.o.xds_port,
                             path, time.monotonic() + 30)  # fmt: skip
    return await asyncio.to_thread(out.read_text)
