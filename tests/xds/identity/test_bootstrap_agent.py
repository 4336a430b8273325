"""`mecha bootstrap --agent-dir` (issue #11): the credential comes from the control plane's API (operator
token), the bootstrap reaches only the agent's sockets, and a real Envoy behind the printed `mecha agent`
command gets its config from a real `mecha serve` over the secure xDS port. The API issues to nobody else."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "agent"))  # agent_helpers: a real `mecha serve`
from agent_helpers import ServedControlPlane, served_control_plane

from xds.agent.agent import SDS_SOCKET, XDS_SOCKET
from xds.identity.credential import read_unverified
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.timeout(120)


async def _cli(*argv: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds.cli", *argv, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def _post(cp: ServedControlPlane, body: object, token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{cp.api_port}/api/v1/credentials"
        async with session.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


async def _proxy_state(cp: ServedControlPlane, proxy_id: str, token: str) -> dict[str, object] | None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"http://127.0.0.1:{cp.api_port}/api/v1/proxies") as resp:
            rows = (await resp.json())["proxies"]
    return next((r for r in rows if r.get("proxy_id") == proxy_id), None)


async def test_bootstrap_issues_a_credential_and_envoy_runs_through_the_agent(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        token = (cp.state / "api-token").read_text().strip()
        agent_dir = tmp_path / "proxy"
        admin, app, inbound, outbound = free_port(), free_port(), free_port(), free_port()
        code, out, err = await _cli(
            "bootstrap", "--id", "reviews-v1", "--app", f"reviews:{app}:{inbound}", "--label", "version=v1",
            "--admin-port", str(admin), "--outbound-port", str(outbound), "--xds-port", str(cp.xds_port),
            "--agent-dir", str(agent_dir), "--server", f"http://127.0.0.1:{cp.api_port}", "--token", token,
            "-o", str(tmp_path / "envoy.yaml"), cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err
        # the credential names this proxy and what its metadata claims; only its owner reads it
        credential = agent_dir / "credential.jwt"
        assert stat.S_IMODE(os.stat(agent_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(credential).st_mode) == 0o600
        cred = read_unverified(credential.read_text().strip())
        assert (cred.proxy_id, cred.namespace) == ("reviews-v1", "default")
        assert cred.service_accounts == ("reviews",)
        assert cred.labels["version"] == ("v1",)
        # Envoy's bootstrap reaches only the agent's sockets and holds no credential
        bootstrap_text = (tmp_path / "envoy.yaml").read_text()
        assert cred.jti not in bootstrap_text and credential.read_text().strip() not in bootstrap_text
        pipes = [
            e["endpoint"]["address"]["pipe"]["path"]
            for c in yaml.safe_load(bootstrap_text)["static_resources"]["clusters"]
            for lep in c["load_assignment"]["endpoints"]
            for e in lep["lb_endpoints"]
        ]
        assert sorted(pipes) == sorted(str(agent_dir / s) for s in (SDS_SOCKET, XDS_SOCKET))
        # the printed agent command runs as it is (`mecha` = this interpreter's xds.cli)
        line = next(row.strip() for row in out.splitlines() if row.strip().startswith("mecha agent"))
        argv = shlex.split(line)
        assert argv[argv.index("--control-plane") + 1] == f"127.0.0.1:{cp.xds_port}"
        # the agent relays this Envoy's loopback admin (proxy-config); the summary names where Envoy's xDS is
        assert argv[argv.index("--envoy-admin") + 1] == f"127.0.0.1:{admin}"
        assert f"xDS its agent's sockets in {agent_dir})" in out, out
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds.cli", *argv[1:], stdout=(tmp_path / "agent.log").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        envoy = EnvoyProcess(bootstrap_text, tmp_path / "envoy")
        try:
            for _ in range(200):
                if (agent_dir / XDS_SOCKET).exists() and (agent_dir / SDS_SOCKET).exists():
                    break
                await asyncio.sleep(0.1)
            await envoy.start(wait_ready=False)
            for _ in range(300):
                row = await _proxy_state(cp, "reviews-v1", token)
                if row and "SYNCED" in json.dumps(row.get("types")):
                    break
                await asyncio.sleep(0.1)
            else:
                agent_log = (tmp_path / "agent.log").read_text()[-2000:]
                raise AssertionError(f"reviews-v1 never synced; agent log:\n{agent_log}")
            status, dump = await envoy.admin_get("/config_dump?resource=dynamic_listeners")
            assert status == 200 and f'"port_value": {inbound}' in dump, dump[:2000]
        finally:
            await envoy.stop()
            agent.terminate()
            await agent.wait()


async def test_the_credential_api_issues_to_the_operator_only(tmp_path: Path) -> None:
    async with served_control_plane(tmp_path / "cp", {}) as cp:
        body = {"proxy_id": "reviews-v1", "service_accounts": ["reviews"]}
        status, answer = await _post(cp, body, None)
        assert status == 401 and "token" not in answer
        reader = (cp.state / "dapr-reader-token").read_text().strip()
        status, answer = await _post(cp, body, reader)
        assert status == 403 and "token" not in answer
        operator = (cp.state / "api-token").read_text().strip()
        status, answer = await _post(cp, {"service_accounts": ["reviews"]}, operator)
        assert status == 400 and "proxy_id" in str(answer["error"])
        status, answer = await _post(cp, {**body, "namespace": "Bad_NS"}, operator)
        assert status == 400 and "namespace" in str(answer["error"])
        status, answer = await _post(cp, {**body, "ttl_s": "forever"}, operator)
        assert status == 400 and "ttl_s" in str(answer["error"])
        status, answer = await _post(cp, body, operator)
        assert status == 200 and read_unverified(str(answer["token"])).proxy_id == "reviews-v1"
        assert str(answer["root_cert"]).startswith("-----BEGIN CERTIFICATE-----")
