"""CLI commands that need no control plane: bootstrap, argument errors, the no-server message, tables."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from xds.cli.main import main
from xds.cli.tables import diff_table, outcome_lines, table
from xds.testing.envoy import envoy_binary, free_port


def test_bootstrap_writes_valid_envoy_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b" / "reviews.yaml"
    rc = main(
        ["bootstrap", "--id", "reviews-v1", "--mode", "sidecar", "--app", "reviews:9081:15006",
         "--label", "app=reviews", "--label", "version=v1", "--delta", "-o", str(out)]
    )  # fmt: skip
    assert rc == 0 and "wrote" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    assert doc["node"]["id"] == "reviews-v1"
    meta = doc["node"]["metadata"]["mecha"]
    assert meta["apps"][0] == {
        "name": "reviews", "app_port": 9081, "inbound_port": 15006, "namespace": "default",
        "labels": {"app": "reviews", "version": "v1"},
    }  # fmt: skip
    assert doc["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    # Envoy itself accepts the rendered file (offline validation, no control plane needed).
    check = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(out), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--app", "reviews:abc:1"], "ports must be integers"),
        (["--app", "reviews"], "NAME:APP_PORT:INBOUND_PORT"),
        (["--app", "a:1:2", "--app", "b:3:4"], "a sidecar fronts one app"),
        (["--label", "novalue"], "KEY=VALUE"),
    ],
)
def test_bootstrap_bad_input_names_the_argument(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bootstrap", "--id", "x", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_client_commands_explain_a_missing_server(capsys: pytest.CaptureFixture[str]) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    assert main(["proxy-status", "--server", server]) == 2
    err = capsys.readouterr().err
    assert f"no control plane at {server}" in err and "mecha up" in err and "mecha serve" in err


def test_apply_of_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", "-f", str(tmp_path / "nope.yaml"), "--server", "http://127.0.0.1:1"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_table_aligns_columns() -> None:
    text = table(("A", "LONGER"), [("x", "1"), ("yyyy", "2")])
    assert text.splitlines() == ["A     LONGER", "x     1", "yyyy  2"]


def test_refused_outcome_lists_each_diagnostic_on_its_own_line() -> None:
    outcome = {
        "accepted": False,
        "diagnostics": [
            {"severity": "error", "file": "vs.yaml", "document": 1, "kind": "VirtualService",
             "namespace": "default", "name": "reviews", "field": "spec.http[0].route[0].destination.subset",
             "message": "unknown subset v9"},
            {"severity": "error", "file": "dr.yaml", "document": 0, "field": "", "message": "malformed"},
        ],
    }  # fmt: skip
    lines = outcome_lines(outcome)
    assert lines[0].startswith("refused")
    assert lines[1] == (
        "error: vs.yaml doc 1 (VirtualService default/reviews) field "
        "spec.http[0].route[0].destination.subset: unknown subset v9"
    )
    assert lines[2] == "error: dr.yaml doc 0: malformed"


def test_diff_table_lists_resource_names_per_type() -> None:
    text = diff_table({"p1": {"RDS": {"added": [], "modified": ["9080"], "removed": []}}, "p2": {}})
    assert "proxy p1:" in text and "RDS   modified  9080" in text
    assert "proxy p2:\n  no Envoy changes" in text
