"""Every shell example in the docs runs, so the docs cannot drift from the program.

Each fenced ```bash block of README.md and docs/*.md runs with `bash -e -o pipefail`. The HTML comment just
above a block says what it needs:
  (none)                              runs offline in an empty folder;
  <!-- docs-test: mesh -->            runs in the folder of a real `mecha up` started here (ports shifted
                                      by its --port-offset: every default port written in the block is too);
  <!-- docs-test: container -->       needs docker/podman: skipped, with that reason;
  <!-- docs-test: skip: REASON -->    not runnable as written (a foreground server); REASON is required;
  <!-- docs-test: file NAME -->       above a non-bash block: written as NAME for the next examples.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # mecha_up: the e2e tests' `mecha up`
from mecha_up import free_offset

from xds.testing.up_ports import up_ports

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- docs-test: (\w+)(?::? ?(.*?))? -->")
FENCE = re.compile(r"^```(\w*)\s*$")
KINDS = {"offline", "mesh", "container", "skip"}


@dataclass
class Example:
    doc: str
    line: int
    kind: str
    reason: str
    text: str
    files: dict[str, str]  # `docs-test: file` blocks seen before it in the same document

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def examples() -> list[Example]:
    found: list[Example] = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        files: dict[str, str] = {}
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if not fence:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            body = "\n".join(lines[i + 1 : end]) + "\n"
            mark = MARK.match(lines[i - 1]) if i else None
            kind, arg = (mark.group(1), (mark.group(2) or "").strip()) if mark else ("offline", "")
            if kind == "file":
                files[arg] = body
            elif fence.group(1) == "bash":
                assert kind in KINDS, f"{path.name}:{i + 1}: unknown docs-test kind {kind!r}"
                assert kind != "skip" or arg, f"{path.name}:{i + 1}: docs-test skip needs a reason"
                found.append(Example(str(path.relative_to(ROOT)), i + 1, kind, arg, body, dict(files)))
            i = end + 1
    return found


EXAMPLES = examples()


def _run(example: Example, cwd: Path, env: dict[str, str], text: str) -> None:
    for name, content in example.files.items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text(content)
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", text], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{example.id} exited {proc.returncode}:\n{text}\n{output}"


def _env() -> dict[str, str]:
    venv_bin = str(ROOT / ".venv" / "bin")
    return {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "MECHA_STATE_DIR": "",
        "MECHA_SERVER": "",
    }


def _folder(tmp: Path) -> Path:
    """A folder as a user's: the repository's .venv reachable as `.venv/bin/mecha`."""
    (tmp / ".venv").symlink_to(ROOT / ".venv")
    return tmp


# ---- the running mesh -----------------------------------------------------------------------------------
def _port_map(offset: int) -> dict[int, int]:
    """Every default port of `mecha up` -> the same port under --port-offset."""
    return dict(zip(up_ports(0), up_ports(offset), strict=True))


@dataclass
class RunningMesh:
    folder: Path
    ports: dict[int, int]

    def shift(self, text: str) -> str:
        return re.sub(
            r"(?<=127\.0\.0\.1:)(\d{4,5})\b", lambda m: str(self.ports.get(int(m[1]), int(m[1]))), text
        )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    folder = _folder(tmp_path_factory.mktemp("docs-mesh"))
    offset = free_offset(step=100)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds.cli", "up", "--port-offset", str(offset)], cwd=folder, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Mecha is up" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
        assert any("Mecha is up" in line for line in lines), "\n".join(lines)
        (folder / "bookinfo").symlink_to(folder / ".mecha" / "config")  # the walkthrough's watched folder
        yield RunningMesh(folder, _port_map(offset))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "offline"], ids=lambda e: e.id)
def test_offline_example(example: Example, tmp_path: Path) -> None:
    _run(example, _folder(tmp_path), _env(), example.text)


@pytest.mark.e2e
@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "mesh"], ids=lambda e: e.id)
def test_mesh_example(example: Example, mesh: RunningMesh) -> None:
    _run(example, mesh.folder, _env(), mesh.shift(example.text))


@pytest.mark.parametrize(
    "example", [e for e in EXAMPLES if e.kind in ("container", "skip")], ids=lambda e: e.id
)
def test_not_runnable_here(example: Example) -> None:
    reason = "needs docker/podman (containers)" if example.kind == "container" else example.reason
    pytest.skip(f"{example.id}: {reason}")


def test_every_example_is_classified() -> None:
    assert len(EXAMPLES) >= 14
    assert {e.kind for e in EXAMPLES} >= {"mesh", "container", "skip"}
