"""Where file-backed components may read and write: not `/`, not system folders, not the Mecha state folder.

A Component is configuration anyone with apply rights can write, so `bindings.localstorage` rooted at `/` or
`secretstores.local.file` pointing at the CA key would hand those files to every caller of the Dapr API.
Paths are resolved (symlinks and `..` followed) before they are checked. Operators widen the sandbox with
MECHA_ALLOWED_FILE_ROOTS / --allow-file-root: once set, file components must live under one of those roots,
and a root listed there may be a system folder. The state folder stays refused unless a listed root is
itself at or inside it (allowing `/` does not silently expose the CA key and tokens).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from capabilities.daprspec.component import ComponentSpec

ENV_ALLOWED_ROOTS = "MECHA_ALLOWED_FILE_ROOTS"

# Component type -> metadata fields holding a path on this machine.
PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "bindings.localstorage": ("rootPath",),
    "secretstores.local.file": ("secretsFile",),
    "state.sqlite": ("connectionString",),  # a file path or a `file:` URI (sqlite3 uri=True)
}


def sqlite_file(raw: str) -> str | None:
    """The file a SQLite connection string opens, or None for an in-memory database (no file)."""
    if not raw.startswith("file:"):
        return None if raw == ":memory:" else raw
    parts = urlsplit(raw)
    path = unquote(parts.path)
    if path in ("", ":memory:") or "memory" in parse_qs(parts.query).get("mode", []):
        return None
    return path


# Component type -> how a path field's value names the file (default: the value is the path).
_PATH_OF = {"state.sqlite": sqlite_file}

# Folders of the operating system: a component may not sit at, inside, or above one of them.
SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
              "/run", "/sbin", "/sys", "/usr", "/var")
)  # fmt: skip


class SandboxError(ValueError):
    """A component path outside the sandbox; the message names the field, the path and the rule."""


def _overlaps(a: Path, b: Path) -> bool:
    """a is b, inside b, or contains b."""
    return a == b or b in a.parents or a in b.parents


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def find_state_dirs(env_value: str | None, start: Path | None = None) -> list[Path]:
    """$MECHA_STATE_DIR, and the nearest `.mecha` folder in start (the current folder) or its parents."""
    found = [Path(env_value)] if env_value else []
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".mecha").is_dir():
            found.append(folder / ".mecha")
            break
    return found


@dataclass(frozen=True)
class FileSandbox:
    state_dirs: tuple[Path, ...] = ()
    allowed_roots: tuple[Path, ...] = ()

    @classmethod
    def build(cls, state_dirs: Iterable[str | Path], allowed_roots: Iterable[str | Path]) -> FileSandbox:
        return cls(
            tuple(Path(p).resolve() for p in state_dirs), tuple(Path(p).resolve() for p in allowed_roots)
        )

    def check_path(self, raw: str, where: str) -> Path:
        """The resolved path, or SandboxError naming `where` (component and field) and why."""
        path = Path(raw).resolve()
        covering = [root for root in self.allowed_roots if _within(path, root)]
        shown = f"{raw!r}" + (f" (resolves to {path})" if str(path) != raw else "")
        if self.allowed_roots and not covering:
            roots = os.pathsep.join(str(r) for r in self.allowed_roots)
            raise SandboxError(f"{where} {shown} is outside the allowed roots {ENV_ALLOWED_ROOTS}={roots}")
        if not covering and path == Path(path.anchor):
            raise SandboxError(
                f"{where} {shown} is the filesystem root: refused (list a narrower folder in "
                f"{ENV_ALLOWED_ROOTS} or --allow-file-root)"
            )
        for state in self.state_dirs:
            if _overlaps(path, state) and not any(_within(root, state) for root in covering):
                raise SandboxError(
                    f"{where} {shown} overlaps the Mecha state folder {state} (CA key, tokens): refused"
                )
        if covering:
            return path
        for system in SYSTEM_FOLDERS:
            if _overlaps(path, system):
                raise SandboxError(
                    f"{where} {shown} overlaps the system folder {system}: refused unless listed in "
                    f"{ENV_ALLOWED_ROOTS} or --allow-file-root"
                )
        return path

    def check_component(self, spec: ComponentSpec) -> None:
        path_of = _PATH_OF.get(spec.type)
        for field in PATH_FIELDS.get(spec.type, ()):
            raw = spec.metadata.get(field)
            path = path_of(raw) if raw and path_of is not None else raw
            if path:
                self.check_path(path, f"metadata {field}")
