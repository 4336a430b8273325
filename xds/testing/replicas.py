"""`mecha serve` replicas on one PostgreSQL store, for the tests and benches that run several (one definition:
tests/e2e/test_replicas*.py, tests/e2e/test_endpoints_replicas.py and bench/xds_push_bench.py --replicas).

What an operator does (docs/operations.md "Replicas on PostgreSQL"): the keys replicas share are made once
(`mecha keys init`: the credential signing key, the CA root in Istio's cacerts names, the API tokens) and
every replica gets its own copy of them, as Kubernetes Secrets are mounted; each replica is a real process
(`python -m xds.cli serve --store URL`) on its own API and xDS ports, which it keeps across a restart
(proxies dial the same address again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from xds.cli.keys import init_state
from xds.controlplane.settings import ENV_CA_DIR, ENV_INSECURE_XDS
from xds.identity.controlplane import CA_FOLDER
from xds.statedir import API_TOKEN_FILE, read_token
from xds.testing.envoy import free_port

HOST = "127.0.0.1"
KEYS_FOLDER = "keys"  # under the replicas' root: what every replica's state folder starts as a copy of


@contextlib.asynccontextmanager
async def fresh_schema(base: str, prefix: str = "replicas_") -> AsyncIterator[str]:
    """A store URL on a new schema of `base` (postgresql://...): the replicas create their tables in it on
    start; the schema is dropped afterwards, whatever they left in it."""
    import asyncpg

    schema = prefix + uuid.uuid4().hex[:12]
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def shared_keys(root: Path) -> Path:
    """The folder of the keys the replicas share (made once, kept when already there): a bench signing
    proxies' credentials itself loads the same key from it."""
    keys = root / KEYS_FOLDER
    init_state(keys)
    return keys


@dataclass
class Replica:
    """One `mecha serve` process. secure: TLS and credentials on its xDS port (the default of `mecha serve`);
    otherwise a plaintext port (MECHA_INSECURE_XDS=1), where the store, not workload identity, is tested."""

    name: str
    store: str
    state: Path  # its own copy of the shared keys
    secure: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # over os.environ
    api_port: int = field(default_factory=free_port)
    xds_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    ready_s: float = 0.0  # how long its last start took to /readyz

    @property
    def log(self) -> Path:
        return self.state.parent / f"{self.name}.log"

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def xds(self) -> str:
        """Its xDS address, as proxies dial it and as replicas name each other in proxy rows."""
        return f"{HOST}:{self.xds_port}"

    @property
    def token(self) -> str:
        found = read_token(self.state, API_TOKEN_FILE)
        assert found is not None, f"no {API_TOKEN_FILE} in {self.state}"
        return found

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"replica {self.name} never started"
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        env = {**os.environ, ENV_CA_DIR: str(self.state / CA_FOLDER), **self.env}
        if self.secure:
            env.pop(ENV_INSECURE_XDS, None)
        else:
            env[ENV_INSECURE_XDS] = "1"
        return env

    async def start(self, ready_within: float = 30.0) -> None:
        """Start it (again: the same ports and state) and wait for /readyz; ready_s says how long it took."""
        argv = [
            sys.executable, "-m", "xds.cli", "serve", "--port", str(self.api_port),
            "--xds-port", str(self.xds_port), "--state-dir", str(self.state), "--store", self.store,
        ]  # fmt: skip
        started = time.monotonic()
        with self.log.open("ab") as out:  # its own session: a signal meant for the test does not reach it
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env=self.environment(),
            )  # fmt: skip
        while time.monotonic() - started < ready_within:
            if self.proc.returncode is not None:
                raise RuntimeError(f"replica {self.name} exited ({self.proc.returncode}): {self.tail()}")
            if await self._ready():
                self.ready_s = time.monotonic() - started
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"replica {self.name} not ready after {ready_within:.0f} s: {self.tail()}")

    async def _ready(self) -> bool:
        timeout = aiohttp.ClientTimeout(total=2)
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as http:
                async with http.get(self.api + "/readyz") as resp:
                    return resp.status == 200
        return False

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        """SIGKILL (gone without a goodbye: its streams end with their TCP connections), SIGSTOP (frozen: its
        connections stay open and silent), SIGCONT."""
        os.kill(self.pid, sig)

    async def kill(self) -> None:
        """SIGKILL, also when stopped, and reap it."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, within: float = 15.0) -> tuple[int, Any]:
        """GET on its API with the shared API token: (status, body)."""
        timeout = aiohttp.ClientTimeout(total=within)
        async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as http:
            async with http.get(self.api + path) as resp:
                return resp.status, _body(await resp.text())

    async def apply(self, text: str, name: str = "config.yaml", within: float = 20.0) -> tuple[int, Any]:
        """POST /api/v1/apply of one file: (status, body)."""
        timeout = aiohttp.ClientTimeout(total=within)
        async with aiohttp.ClientSession(timeout=timeout, headers=self._headers()) as http:
            files = {"files": [{"name": name, "text": text}]}
            async with http.post(self.api + "/api/v1/apply", json=files) as resp:
                return resp.status, _body(await resp.text())

    async def version(self) -> int:
        return int((await self.get("/api/v1/config"))[1]["version"])

    async def own_rows(self, within: float = 10.0) -> list[dict[str, Any]]:
        """The proxies whose streams it holds itself (its /api/v1/proxies also lists the other replicas'
        proxies, from their heartbeats, with their address as `replica`)."""
        status, body = await self.get("/api/v1/proxies", within=within)
        if status != 200:
            return []
        return [row for row in body["proxies"] if row.get("replica", self.xds) == self.xds]

    async def holds(self, proxy_id: str) -> bool:
        """Is the proxy's stream on this replica?"""
        return any(row["proxy_id"] == proxy_id for row in await self.own_rows(within=2))


def _body(text: str) -> Any:
    """The API's JSON; the text itself where an answer is not JSON (aiohttp's own plain-text errors)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def replica_set(
    store: str, root: Path, count: int = 2, *, secure: bool = False, env: Mapping[str, str] | None = None
) -> list[Replica]:
    """`count` replicas named a, b, ... on `store`, not started: each with its state folder root/<name> (a
    copy of the shared keys) and its log root/<name>.log."""
    keys = shared_keys(root)
    made = []
    for i in range(count):
        name = chr(ord("a") + i)
        shutil.copytree(keys, root / name)
        made.append(Replica(name, store, root / name, secure=secure, env=dict(env or {})))
    return made


@contextlib.asynccontextmanager
async def running_replicas(
    store: str,
    root: Path,
    count: int = 2,
    *,
    secure: bool = False,
    env: Mapping[str, str] | None = None,
    ready_within: float = 30.0,
) -> AsyncIterator[list[Replica]]:
    """replica_set started one after the other (each ready before the next starts); all SIGKILLed at the
    end, stopped or not."""
    replicas = replica_set(store, root, count, secure=secure, env=env)
    try:
        for replica in replicas:
            await replica.start(ready_within)
        yield replicas
    finally:
        for replica in replicas:
            await replica.kill()
