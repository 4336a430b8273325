"""mypy over xds and capabilities with the project's [tool.mypy] (pyproject.toml): how CI type-checks, since
.ci/run runs pytest. Strict for xds.server, xds.cache and capabilities.blocks (the typed seams: the xDS
server reads its cache through xds.cache.watcher.ConfigWatcher, the Dapr APIs reach each component through
its block's contract Protocol); mypy's default level for the rest.

Run it alone with `pytest -m typecheck`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.typecheck


def test_mypy_passes_on_xds_and_capabilities() -> None:
    # `packages` and the per-module settings come from pyproject.toml; the cache stays under the repository
    # (mypy keeps it out of git), so a second run only re-checks what changed
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"mypy found errors:\n{report}"
