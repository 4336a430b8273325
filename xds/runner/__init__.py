"""`mecha up` without a container engine: supervise the control plane, demo apps and Envoys locally.

Names load lazily (PEP 562): the agent's launcher imports xds.runner.procs, which runs this file first, and
the stack imports (through gateways) that launcher."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.runner.errors import StackError
    from xds.runner.stack import Stack, StackOptions

_HOMES = {"Stack": "xds.runner.stack", "StackError": "xds.runner.errors", "StackOptions": "xds.runner.stack"}

__all__ = ["Stack", "StackError", "StackOptions"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
