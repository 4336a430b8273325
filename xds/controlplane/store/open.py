"""Which backend a control plane uses: `--store postgresql://...` (replicas share it) or the embedded SQLite
file in the state folder (one process, no server needed)."""

from __future__ import annotations

from pathlib import Path

from xds.controlplane.store.base import StoreBackend, StoreError
from xds.controlplane.store.sqlite import SqliteBackend


def is_shared(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_backend(url: str, state_dir: Path) -> StoreBackend:
    """url: "" for the embedded store; a postgresql:// URL; or sqlite:///path/config.db."""
    if not url:
        return SqliteBackend.in_state_dir(state_dir)
    if is_shared(url):
        from xds.controlplane.store.postgres import PostgresBackend  # asyncpg only when used

        return PostgresBackend(url)
    if url.startswith("sqlite://"):
        return SqliteBackend(Path(url.removeprefix("sqlite://")))
    raise StoreError(f"--store {url!r}: expected postgresql://host/database or sqlite:///path/config.db")
