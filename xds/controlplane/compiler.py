"""What the control plane calls of the compiler (the xds.pipeline module, or a test's stand-in).

ControlPlane(pipeline=...) is typed against these Protocols: load documents, compile them, and build the
per-proxy snapshots. Nothing here is imported at run time by the CLI client: the translator behind
xds.pipeline is loaded only when a control plane starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xds.cache.snapshot import Snapshot
    from xds.controlplane.store.plan import CompileResultLike
    from xds.diagnostics import Diagnostic
    from xds.proxy import ProxyIdentity
    from xds.sources import RawDocument


class Builder(Protocol):
    """xds.translate.builder.SnapshotBuilder as the control plane uses it."""

    def build(
        self,
        config: Any,  # the compiled MeshConfig
        proxies: Iterable[ProxyIdentity],
        changed_at: float = 0.0,
        config_version: str = "",
    ) -> dict[str, Snapshot]:
        """One snapshot per proxy id."""
        ...


class Pipeline(Protocol):
    """The functions of xds.pipeline the control plane calls (a module satisfies a Protocol)."""

    def compile_documents(self, docs: list[RawDocument]) -> CompileResultLike:
        """Model and validate a complete document set (xds.pipeline's also takes strict= and inputs=)."""
        ...

    def load_paths(self, paths: list[str | Path]) -> tuple[list[RawDocument], list[Diagnostic]]: ...

    def load_text(self, text: str, filename: str = ...) -> tuple[list[RawDocument], list[Diagnostic]]: ...

    @property
    def SnapshotBuilder(self) -> Callable[..., Builder]:  # the module's class, hence the name
        """Makes a Builder (keyword options: certs, route_tables, path_normalization, agent_sds)."""
        ...
