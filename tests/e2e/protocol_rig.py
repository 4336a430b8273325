"""A small mesh for protocol tests: the control plane in-process (plaintext xDS) and real Envoys whose node
metadata each test writes. Ports come from the shared allocator (xds.testing.envoy.free_port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.testing.envoy import EnvoyProcess, bootstrap_for


class Rig:
    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp
        self.workdir = workdir
        self.envoys: list[EnvoyProcess] = []

    @property
    def xds_port(self) -> int:
        assert self.cp.xds_port is not None
        return self.cp.xds_port

    async def apply(self, text: str, name: str = "mesh.yaml") -> dict[str, Any]:
        outcome = await self.cp.apply([(name, text)])
        assert outcome["accepted"], outcome["diagnostics"]
        return outcome

    async def envoy(self, proxy_id: str, meta: Mapping[str, Any]) -> EnvoyProcess:
        """A real Envoy for node metadata `meta` (node.metadata.mecha), started and ready (LDS+CDS in)."""
        text, _ = bootstrap_for(proxy_id, self.xds_port, meta)
        proc = EnvoyProcess(text, self.workdir, name=proxy_id)
        self.envoys.append(proc)
        await proc.start(wait_ready=True, timeout=20.0)
        return proc


@asynccontextmanager
async def rig(workdir: Path) -> AsyncIterator[Rig]:
    settings = Settings(api_port=0, xds_port=0, state_dir=workdir / "state", watch=False, insecure_xds=True)
    cp = ControlPlane(settings)
    await cp.start()
    found = Rig(cp, workdir)
    try:
        yield found
    finally:
        for proc in found.envoys:
            await proc.stop()
        await cp.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll until check() is true (a config push is asynchronous); fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            if await check():
                return
        except (OSError, TimeoutError, ConnectionError):
            pass
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)
