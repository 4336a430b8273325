"""The config store: the accepted document set and its version, durable in a backend.

plan.py plans a change (pure), config.py's ConfigStore evaluates and commits it (backend first, then the
in-memory view the proxies are served from), base.py is the persistence seam, sqlite.py the default backend.
"""

from xds.controlplane.store.base import (
    ChangeRecord,
    StoreBackend,
    StoredDocument,
    StoredState,
    StoreError,
    StoreVersionConflict,
    VersionRecord,
)
from xds.controlplane.store.config import ConfigStore
from xds.controlplane.store.memory import MemoryBackend, MemoryRecord
from xds.controlplane.store.plan import (
    OWNER_API,
    OWNER_CONFLICT,
    VERSION_CONFLICT,
    Change,
    CompileFn,
    InputRefresh,
    Key,
    Plan,
    folder_owner,
    key_str,
)
from xds.controlplane.store.sqlite import SqliteBackend

__all__ = [
    "OWNER_API",
    "OWNER_CONFLICT",
    "VERSION_CONFLICT",
    "Change",
    "ChangeRecord",
    "CompileFn",
    "ConfigStore",
    "InputRefresh",
    "Key",
    "MemoryBackend",
    "MemoryRecord",
    "Plan",
    "SqliteBackend",
    "StoreBackend",
    "StoreError",
    "StoreVersionConflict",
    "StoredDocument",
    "StoredState",
    "VersionRecord",
    "folder_owner",
    "key_str",
]
