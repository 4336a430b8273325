"""A real `mecha serve` (secure xDS port) in a child process, and what an agent needs to reach it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from xds.agent.launch import issue_for
from xds.testing.envoy import free_port

SIDECAR_META: dict[str, Any] = {
    "mode": "sidecar",
    "namespace": "default",
    "labels": {"app": "reviews", "version": "v1"},
    "apps": [{"name": "reviews", "labels": {"app": "reviews", "version": "v1"}}],
}


@dataclass
class ServedControlPlane:
    state: Path
    api_port: int
    xds_port: int
    log: Path
    pid: int = 0  # the `mecha serve` process (tests SIGSTOP it)

    @property
    def xds(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    @property
    def root(self) -> Path:
        return self.state / "ca" / "root-cert.pem"

    def credential(self, proxy_id: str = "reviews-v1", meta: dict[str, Any] | None = None) -> Path:
        return issue_for(self.state, proxy_id, meta or SIDECAR_META)


@contextlib.asynccontextmanager
async def served_control_plane(state: Path, env: dict[str, str]) -> AsyncIterator[ServedControlPlane]:
    """`mecha serve` with a TLS xDS port (credentials required), ready when /readyz answers."""
    (state / "config").mkdir(parents=True, exist_ok=True)
    cp = ServedControlPlane(state, free_port(), free_port(), state / "control-plane.log")
    argv = [sys.executable, "-m", "xds.cli", "serve", "--port", str(cp.api_port), "--xds-port",
            str(cp.xds_port), "--config", str(state / "config"), "--state-dir", str(state)]  # fmt: skip
    full_env = {**os.environ, "MECHA_CA_DIR": str(state / "ca"), **env}
    full_env.pop("MECHA_INSECURE_XDS", None)
    with cp.log.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log, env=full_env)
    cp.pid = proc.pid
    try:
        await wait_http(f"http://127.0.0.1:{cp.api_port}/readyz", 30, cp.log)
        yield cp
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_http(url: str, within_s: float, log: Path, want: int | None = None) -> int:
    """The first status (2xx, or `want`) url answers within the time; AssertionError shows the log."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if (want is None and 200 <= resp.status < 300) or resp.status == want:
                        return resp.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    tail = log.read_text()[-3000:]  # noqa: ASYNC240 - the failure message
    raise AssertionError(f"{url} not answering in {within_s}s; log:\n{tail}")


def serial_in(folder: Path) -> int | None:
    """The serial of the leaf in folder/cert-chain.pem (None while absent or half written)."""
    try:
        return x509.load_pem_x509_certificate((folder / "cert-chain.pem").read_bytes()).serial_number
    except (OSError, ValueError):
        return None


async def distinct_serials(folder: Path, seconds: float, step: float = 0.1) -> set[int]:
    """Every certificate seen in folder/cert-chain.pem while watching for `seconds`."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        serial = serial_in(folder)
        if serial is not None:
            seen.add(serial)
        await asyncio.sleep(step)
    return seen
