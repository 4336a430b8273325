"""The compose Envoy health check, run against a real Envoy 1.40: not healthy while LIVE without config,
healthy once listeners and clusters arrived from a real control plane (issue #12: "healthy" = configured)."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from deploy_helpers import COMPOSE

from xds.bootstrap import BootstrapParams, render
from xds.runner.procs import Child, Supervisor
from xds.testing.envoy import EnvoyProcess, free_port

pytestmark = pytest.mark.e2e

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
"""


def _compose_check(render_module: ModuleType, compose_file: str, service: str, admin_port: int) -> list[str]:
    """The service's health check from the compose file, pointed at this host's script and admin port."""
    svc = yaml.safe_load((COMPOSE / compose_file).read_text())["services"][service]
    kind, *rest = svc["healthcheck"]["test"]
    argv = shlex.split(rest[0]) if kind == "CMD-SHELL" else rest
    host_script = str(COMPOSE / render_module.ENVOY_READY_SCRIPT)
    container_port = {"node-a": "15100"}.get(service, "15000")
    return [
        host_script
        if arg == render_module.ENVOY_READY_MOUNT
        else arg.replace(container_port, str(admin_port))
        for arg in argv
    ]


async def _check(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=10, check=False
    )


async def _eventually(argv: list[str], want_ok: bool, within_s: float) -> subprocess.CompletedProcess[str]:
    result = await _check(argv)
    for _ in range(int(within_s * 4)):
        if (result.returncode == 0) == want_ok:
            return result
        await asyncio.sleep(0.25)
        result = await _check(argv)
    return result


@pytest.mark.parametrize(
    ("compose_file", "service"),
    [("docker-compose.sidecar.yaml", "ingressgateway"), ("docker-compose.node.yaml", "node-a")],
)
async def test_envoy_health_check_passes_only_once_configured(
    compose_file: str, service: str, render: ModuleType, tmp_path: Path
) -> None:
    xds_port, api_port = free_port(), free_port()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mesh.yaml").write_text(MESH)
    metadata = {
        "mode": "sidecar",
        "outbound_port": free_port(),
        "labels": {"app": "ratings", "version": "v1"},
    }
    bootstrap = render_bootstrap(xds_port, metadata)
    envoy = EnvoyProcess(bootstrap, tmp_path, "ratings-v1")
    argv = _compose_check(render, compose_file, service, envoy.admin_port)
    sup = Supervisor()
    try:
        await envoy.start(wait_ready=False)
        await envoy.wait_ready(20)  # LIVE: the initial fetch timed out, no control plane yet
        unconfigured = await _check(argv)
        assert unconfigured.returncode != 0, "healthy while LIVE with no config"
        assert "no clusters (CDS)" in unconfigured.stdout and "no listeners (LDS)" in unconfigured.stdout
        serve = [sys.executable, "-m", "xds.cli", "serve", "--port", str(api_port),
                 "--xds-port", str(xds_port), "--config", str(tmp_path / "config"),
                 "--state-dir", str(tmp_path / "state"), "--insecure-xds"]  # fmt: skip
        await sup.start(Child("control-plane", "control-plane", serve, tmp_path / "cp.log"))
        configured = await _eventually(argv, want_ok=True, within_s=30)
        assert configured.returncode == 0, configured.stdout + configured.stderr
        assert "ready" in configured.stdout
    finally:
        await envoy.stop()
        await sup.stop_all()


def render_bootstrap(xds_port: int, metadata: dict[str, object]) -> str:
    params = BootstrapParams(
        proxy_id="ratings-v1", xds_port=xds_port, admin_port=free_port(), metadata=metadata
    )
    return render(params)
