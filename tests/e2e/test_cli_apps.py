"""Client commands against a real `mecha up` (found from .mecha/up.json in the current folder): `mecha list`
(apps with their ports, Dapr gRPC included), `mecha logs APP`, `mecha invoke` through the mesh,
`mecha publish`'s error naming the missing component, and `mecha diff`'s content diff."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mecha_up import MECHA, free_offset, interrupt, read_until, start_up

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("up")
    proc = start_up(folder, "--port-offset", str(free_offset()))
    try:
        lines = read_until(proc, "Logs: ", 120)  # the summary's last line
        assert any("Mecha is up" in line for line in lines), "\n".join(lines)
        info = json.loads((folder / ".mecha" / "up.json").read_text())
        yield {"folder": folder, "info": info, "output": lines}
    finally:
        interrupt(proc, 40)


def mecha(up: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MECHA, *argv], cwd=up["folder"], capture_output=True, text=True, timeout=60)


def test_summary_prints_each_apps_dapr_grpc_port(up: dict[str, Any]) -> None:
    grpc = up["info"]["apps"]["reviews-v1"]["dapr_grpc"]
    assert any("reviews-v1" in line and grpc in line for line in up["output"]), up["output"]


def test_list_shows_every_app_with_its_ports(up: dict[str, Any]) -> None:
    out = mecha(up, "list")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[1]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"productpage-v1", "reviews-v1", "reviews-v2", "ratings-v1"}, out.stdout
    apps = up["info"]["apps"]
    app_id, _w, app_port, http_port, grpc_port, pid, *_ = rows["reviews-v2"]
    assert app_id == "reviews" and app_port == apps["reviews-v2"]["app"].rsplit(":", 1)[1]
    assert http_port == apps["reviews-v2"]["dapr"].rsplit(":", 1)[1]
    assert grpc_port == apps["reviews-v2"]["dapr_grpc"].rsplit(":", 1)[1] and pid.isdigit()
    as_json = json.loads(mecha(up, "list", "-o", "json").stdout)
    assert {r["app_id"] for r in as_json} == {"productpage", "reviews", "ratings"}


def test_logs_prints_the_apps_log_and_names_an_unknown_app(up: dict[str, Any]) -> None:
    out = mecha(up, "logs", "reviews", "--of", "envoy")
    assert out.returncode == 0, out.stderr
    assert "==> reviews-v1 (envoy:" in out.stdout and "==> reviews-v2 (envoy:" in out.stdout
    assert "[info][main]" in out.stdout  # Envoy's own log (--log-path), not its empty stdout
    bad = mecha(up, "logs", "nosuchapp")
    assert bad.returncode == 2 and "no app 'nosuchapp'" in bad.stderr and "ratings" in bad.stderr


def test_invoke_goes_through_the_mesh(up: dict[str, Any]) -> None:
    out = mecha(up, "invoke", "ratings", "ratings/1")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["app"] == "ratings" and body["stars"] in (4, 5), body


def test_publish_to_a_missing_component_names_it(up: dict[str, Any]) -> None:
    out = mecha(up, "publish", "nosuchpubsub", "orders", '{"id": 1}')
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nosuchpubsub" in out.stderr and "HTTP 4" in out.stderr, out.stderr


def test_diff_shows_the_content_of_the_changed_route(up: dict[str, Any], tmp_path: Path) -> None:
    change = tmp_path / "ratings-timeout.yaml"
    change.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: ratings-timeout, namespace: default}\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - timeout: 7s\n    route: [{destination: {host: ratings}}]\n"
    )
    out = mecha(up, "diff", "-f", str(change))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# proxies: " in out.stdout and "--- RDS/" in out.stdout, out.stdout
    assert any(line.startswith("+") and "7s" in line for line in out.stdout.splitlines()), out.stdout
    machine = json.loads(mecha(up, "diff", "-f", str(change), "-o", "json").stdout)
    contents = [
        text
        for per_type in machine["proxies"].values()
        for changes in per_type.values()
        for text in (changes.get("content") or {}).values()
    ]
    assert any("7s" in text for text in contents), machine
