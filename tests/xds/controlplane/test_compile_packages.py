"""`mecha up` byte-compiles our packages so sidecars do not recompile them on every start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import capabilities
from xds.runner.stack import compile_packages


def test_capability_service_modules_have_fresh_bytecode() -> None:
    compile_packages()
    root = Path(capabilities.__file__).parent
    for source in (root / "__main__.py", root / "runtime.py", root / "api" / "http" / "app.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), cached
        assert cached.stat().st_mtime >= source.stat().st_mtime
