"""A real Prometheus server scrapes a running `mecha up`: the control plane's istiod names (pilot_*) and a
capability service's daprd names (dapr_*) arrive as the dashboards people already have expect them. The
demo's pub/sub carries one event first (published through ratings' Dapr API, delivered to ratings by the
Subscription ratings-orders), so the pub/sub counters have series, with daprd's labels
(pkg/diagnostics/component_monitoring.go; namespace as daprd's security.CurrentNamespace: "default")."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mecha_up import free_offset, read_until

from xds.demo.config import default_layout
from xds.testing.envoy import free_port

pytestmark = pytest.mark.e2e
# pilot_total_xds_rejects has no series until a proxy NACKs (as istiod's): tests/xds/controlplane covers it.
ISTIOD_NAMES = {"pilot_xds_pushes", "pilot_xds", "pilot_proxy_convergence_time_bucket",
                "pilot_xds_push_time_bucket", "pilot_k8s_cfg_events"}  # fmt: skip
DAPRD_NAMES = {"dapr_http_server_request_count", "dapr_component_pubsub_ingress_count",
               "dapr_component_pubsub_egress_count"}  # fmt: skip
# one series each, label for label as daprd writes them for the demo's publish and delivery
PUBSUB = {"app_id": "ratings", "component": "pubsub", "namespace": "default", "topic": "orders"}
DAPRD_SERIES = {
    "dapr_component_pubsub_egress_count": {**PUBSUB, "success": "true"},
    "dapr_component_pubsub_ingress_count": {**PUBSUB, "process_status": "success", "status": "success"},
}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _publish_and_wait_for_delivery(ratings: dict[str, str]) -> None:
    """One event on pubsub/orders through ratings' Dapr HTTP API; returns once ratings has received it."""
    before = _get_json(ratings["app"] + "/events")["received"].get("orders", 0)
    publish = urllib.request.Request(
        ratings["dapr"] + "/v1.0/publish/pubsub/orders", data=b'{"orderId": 1}', method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(publish, timeout=10) as resp:
        assert resp.status == 204
    deadline = time.monotonic() + 15
    while _get_json(ratings["app"] + "/events")["received"].get("orders", 0) == before:
        assert time.monotonic() < deadline, "the published event never reached ratings"
        time.sleep(0.1)


def test_prometheus_scrapes_istio_and_dapr_metric_names(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus (.ci/run installs it)")
    offset = free_offset()
    up = subprocess.Popen(
        [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(offset)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    prometheus = None
    try:
        read_until(up, "Mecha is up", 90)
        info = json.loads((tmp_path / ".mecha" / "up.json").read_text())
        with urllib.request.urlopen(info["productpage"], timeout=10) as resp:
            assert resp.status == 200
        capability = default_layout("sidecar", offset).proxy_of("ratings-v1").capabilities_http_port
        urllib.request.urlopen(f"http://127.0.0.1:{capability}/v1.0/healthz", timeout=10).close()
        _publish_and_wait_for_delivery(info["apps"]["ratings-v1"])
        api = info["api"].split("//", 1)[1].rstrip("/")
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "istiod",
                            "static_configs": [{"targets": [api]}],
                            "authorization": {"credentials_file": str(tmp_path / ".mecha" / "api-token")},
                        },
                        {"job_name": "daprd", "static_configs": [{"targets": [f"127.0.0.1:{capability}"]}]},
                    ],
                }
            )
        )
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),
        )  # fmt: skip
        names: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                names = set(_get_json(f"http://127.0.0.1:{port}/api/v1/label/__name__/values")["data"])
            except OSError:
                pass
            if ISTIOD_NAMES | DAPRD_NAMES <= names:
                break
            time.sleep(1)
        assert ISTIOD_NAMES | DAPRD_NAMES <= names, sorted(
            n for n in names if n.startswith(("pilot", "dapr"))
        )
        for name, labels in DAPRD_SERIES.items():
            series = _get_json(f"http://127.0.0.1:{port}/api/v1/series?match[]={name}")["data"]
            found = [{k: v for k, v in s.items() if k not in ("__name__", "job", "instance")} for s in series]
            assert found == [labels], (name, found)
            meta = _get_json(f"http://127.0.0.1:{port}/api/v1/metadata?metric={name}")["data"]
            assert meta[name][0]["type"] == "counter", meta
        targets = _get_json(f"http://127.0.0.1:{port}/api/v1/targets")["data"]["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {"istiod": "up", "daprd": "up"}
        pushes = _get_json(f"http://127.0.0.1:{port}/api/v1/query?query=sum(pilot_xds_pushes)")["data"][
            "result"
        ]
        assert float(pushes[0]["value"][1]) > 0
        meta = _get_json(f"http://127.0.0.1:{port}/api/v1/metadata?metric=pilot_xds_pushes")["data"]
        assert meta["pilot_xds_pushes"][0]["type"] == "counter"
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
