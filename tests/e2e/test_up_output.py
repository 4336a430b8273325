"""What a real `mecha up --mode node` prints (issue #16): the progress line while an Envoy is still
starting, and the summary's hints naming the node's proxy (there is no productpage-v1 proxy in node mode),
which then work as printed.

`mecha up` starts the Envoy binary next to its interpreter, so the test runs it from an overlay of this
venv (its lib/ and pyvenv.cfg, its bin/ but for `envoy`) whose `envoy` starts the node's Envoy a few seconds
late: long enough for the progress line, which comes every 2 s while any Envoy is awaited."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mecha_up import free_offset, interrupt, read_until

from xds.demo.config import default_layout

pytestmark = pytest.mark.e2e
LATE_S = 5  # the node's Envoy: > 2 progress periods
PROGRESS = re.compile(r"^\s*\.\.\. Envoys: (\d+)/(\d+) SYNCED, waiting for (.+)$")


def venv_with_a_late_envoy(root: Path, late_proxy: str) -> Path:
    """A venv overlay whose `envoy` starts `late_proxy`'s Envoy LATE_S seconds late; its python."""
    venv = Path(sys.prefix)
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    for name in ("lib", "lib64", "include"):
        if (venv / name).exists():
            (root / name).symlink_to(venv / name)
    for entry in (venv / "bin").iterdir():
        if entry.name != "envoy":
            (root / "bin" / entry.name).symlink_to(entry)  # python -> the base interpreter, as the venv's
    real = (venv / "bin" / "envoy").resolve()
    late = root / "bin" / "envoy"
    late.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --service-node {late_proxy} "*) sleep {LATE_S};; esac\n'
        f'exec {shlex.quote(str(real))} "$@"\n'
    )
    late.chmod(0o755)
    return root / "bin" / "python"


def test_node_mode_prints_progress_and_hints_naming_the_node_proxy(tmp_path: Path) -> None:
    offset = free_offset()
    layout = default_layout("node", offset)
    node = layout.proxies[0].id
    envoys = [p.id for p in layout.proxies] + ([layout.gateway.id] if layout.gateway else [])
    python = venv_with_a_late_envoy(tmp_path / "venv", node)
    folder = tmp_path / "up"
    folder.mkdir()
    proc = subprocess.Popen(
        [str(python), "-m", "xds.cli", "up", "--mode", "node", "--port-offset", str(offset)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = read_until(proc, "Logs: ", 120)  # the summary's last line
        out = "\n".join(lines)
        assert any("Mecha is up (node mode" in line for line in lines), out

        # progress while the node's Envoy is awaited: counts that add up, the awaited ones by name
        progress = [(i, m) for i, line in enumerate(lines) if (m := PROGRESS.match(line))]
        assert progress, out
        for _, m in progress:
            synced, total, waiting = int(m[1]), int(m[2]), m[3].split(", ")
            assert total == len(envoys) and synced == total - len(waiting), m[0]
            assert set(waiting) <= set(envoys) and node in waiting, m[0]
        ready = next(i for i, line in enumerate(lines) if re.search(rf"\[ready\] envoy {node}\s", line))
        assert progress[-1][0] < ready, out  # no progress line names it once it is ready
        assert all(node not in m[3] for i, m in progress if i > ready)

        # the hints name the node's proxy, and work as printed
        hints = [line.strip() for line in lines if line.strip().startswith("mecha proxy-")]
        assert any(h.startswith(f"mecha proxy-config {node} routes ") for h in hints), out
        assert not any("productpage-v1" in h for h in hints), hints
        for hint in hints:
            argv = shlex.split(hint)
            done = subprocess.run(
                [sys.executable, "-m", "xds.cli", *argv[1:]],
                cwd=folder, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, f"{hint}\n{done.stdout}{done.stderr}"
            # proxy-status lists the node; its routes are the node's: each app's Dapr listener among them
            expected = ["dapr-http|ratings", "dapr-http|productpage"] if "routes" in argv else [node]
            assert all(e in done.stdout for e in expected), f"{hint}\n{done.stdout}"
    finally:
        interrupt(proc, 40)
