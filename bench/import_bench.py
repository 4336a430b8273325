"""Import cost of modules on a start path: `python -X importtime -c "import MODULE"`, cumulative seconds of
MODULE's own line (what its import took, the interpreter's start excluded), median of N runs interleaved
across the modules, with the load average (the machine may be shared).

    .venv/bin/python bench/import_bench.py xds.agent.agent xds.translate --runs 5
    .venv/bin/python bench/import_bench.py xds.agent.agent --tree DIR   # another checkout (e.g. an older
                                                                        # commit from `git archive`)

One warm-up import per module first, not counted: bytecode is written then, as an installed wheel has it."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path


def import_seconds(module: str, tree: Path) -> float:
    """Cumulative seconds of `import module` as -X importtime reports it, run in tree."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=tree, env=env,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"import {module} failed in {tree}:\n{out.stderr[-2000:]}")
    for line in out.stderr.splitlines():  # "import time: self [us] | cumulative | imported package"
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise SystemExit(f"{module}: no importtime line (already imported by the interpreter's start?)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout whose modules are imported (default: this one)")  # fmt: skip
    args = parser.parse_args()
    tree = args.tree.resolve()
    for module in args.modules:
        import_seconds(module, tree)  # warm-up: bytecode
    times: dict[str, list[float]] = {m: [] for m in args.modules}
    loads = []
    for i in range(args.runs):
        loads.append(os.getloadavg()[0])
        for module in args.modules:
            times[module].append(import_seconds(module, tree))
        row = ", ".join(f"{m} {times[m][-1]:.3f} s" for m in args.modules)
        print(f"run {i + 1}: {row} (load average {loads[-1]:.2f})", flush=True)
    print(f"median of {args.runs} in {tree} (load average {min(loads):.2f}-{max(loads):.2f}, "
          f"{os.cpu_count()} CPUs):")  # fmt: skip
    for module, values in times.items():
        print(f"  import {module}: {statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
