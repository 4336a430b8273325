"""Test harness: a real capability service (Runtime + HTTP + gRPC API) on a background thread.

The SDK's clients probe HTTP `/v1.0/healthz/outbound` synchronously at construction (the aio client too,
blocking its own loop), so the service must run on another thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from capabilities.api.grpc.server import GrpcServerHandle, start_grpc
from capabilities.config.settings import Settings
from capabilities.eventloop import loop_factory
from capabilities.runtime import Runtime
from xds.testing import envoy as envoy_testing

COMPONENTS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.in-memory
  version: v1
  metadata: [{name: redeliverDelayMs, value: "20"}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: secretstore}
spec:
  type: secretstores.local.file
  version: v1
  metadata: [{name: secretsFile, value: "SECRETS_FILE"}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: configstore}
spec:
  type: configuration.in-memory
  version: v1
  metadata: [{name: items, value: '{"color": "blue", "size": {"value": "L", "version": "7"}}'}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: lockstore}
spec: {type: lock.in-memory, version: v1}
"""


def free_port() -> int:
    return envoy_testing.free_port()  # outside the ephemeral range: see xds.testing.envoy


@dataclass
class Sidecar:
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    http_port: int
    grpc: GrpcServerHandle

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the sidecar's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {
            "DAPR_RUNTIME_HOST": "127.0.0.1",
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_HEALTH_TIMEOUT": "5",
        }
        if token:
            env["DAPR_API_TOKEN"] = token
        return env


_shared_loop: asyncio.AbstractEventLoop | None = None
_shared_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop thread for every in-process sidecar of the test session.

    grpc.aio attaches its poller to the loop it first runs on; a new loop per sidecar (each in its own thread,
    some alive at the same time) crashed the process now and then inside grpc's poller. One long-lived loop
    keeps grpc.aio on a single loop, as in a real capability service. It is the loop `python -m capabilities`
    runs on (uvloop when installed; MECHA_EVENT_LOOP=asyncio for asyncio's own)."""
    global _shared_loop
    with _shared_lock:
        if _shared_loop is None:
            loop = loop_factory()()
            thread = threading.Thread(target=loop.run_forever, name="sidecars", daemon=True)
            thread.start()
            _shared_loop = loop
        return _shared_loop


def start_sidecar(
    resources: Path,
    *,
    app_id: str = "grpcapp",
    api_token: str | None = None,
    app_port: int | None = None,
    protocol: str = "http",
    max_body_bytes: int | None = None,
) -> tuple[Sidecar, Any]:
    """Start Runtime + HTTP + gRPC on the shared sidecar loop; return the sidecar and a stop() function."""
    loop = _loop()
    ready: Future[Sidecar] = Future()
    stop_event: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop_event
        stop_event = asyncio.Event()
        settings = Settings(
            app_id=app_id,
            http_port=0,
            api_token=api_token,
            app_port=app_port,
            resources_paths=[str(resources)],
            **({"max_body_bytes": max_body_bytes} if max_body_bytes else {}),
        )
        runtime = Runtime(settings)
        try:
            await runtime.start()
            from capabilities.api.http.app import build_app

            runner = web.AppRunner(build_app(runtime))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            runtime.settings.http_port = http_port
            handle = await start_grpc(runtime, 0, protocol=protocol)
        except BaseException as exc:  # surface start-up failures to the test
            if not ready.done():
                ready.set_exception(exc)
            raise
        ready.set_result(Sidecar(runtime, loop, http_port, handle))
        await stop_event.wait()
        await handle()
        await runner.cleanup()
        await runtime.stop()

    done = asyncio.run_coroutine_threadsafe(main(), loop)
    sidecar = ready.result(timeout=20)

    def stop() -> None:
        loop.call_soon_threadsafe(stop_event.set)  # type: ignore[union-attr]
        try:
            done.result(timeout=15)
        except Exception:  # a failing shutdown must not hide the test's own result
            pass

    return sidecar, stop


def write_resources(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    secrets = folder.parent / "secrets.json"
    secrets.write_text('{"db-password": "s3cret", "api": {"key": "k1"}}')
    (folder / "components.yaml").write_text(COMPONENTS.replace("SECRETS_FILE", str(secrets)) + extra)
    return folder
