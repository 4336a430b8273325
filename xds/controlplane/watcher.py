"""GitOps source: a folder is the complete config set for its source; poll mtimes and resubmit on change.

Polling (not inotify) keeps it dependency-free and works on every filesystem; the interval is small compared
with the debounce anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from xds.sources.loader import YAML_SUFFIXES

log = logging.getLogger("mecha.watch")

Signature = dict[str, tuple[int, int]]
OnChange = Callable[[Path], Awaitable[None]]


def folder_signature(folder: Path, suffixes: tuple[str, ...] | None = YAML_SUFFIXES) -> Signature:
    """{path: (mtime_ns, size)} of every file below folder with one of `suffixes` (None: every file);
    {} when the folder is missing."""
    sig: Signature = {}
    if not folder.is_dir():
        return sig
    for path in folder.rglob("*"):
        if (suffixes is None and path.is_file()) or (suffixes is not None and path.suffix in suffixes):
            try:
                st = path.stat()
            except OSError:  # removed between listing and stat: the next poll sees it gone
                continue
            sig[str(path)] = (st.st_mtime_ns, st.st_size)
    return sig


class FolderWatcher:
    """Calls on_change(folder) once at start and then whenever a YAML file (or, with suffixes=None, any
    file) is added, edited or removed."""

    def __init__(
        self,
        folder: Path,
        on_change: OnChange,
        interval: float = 1.0,
        suffixes: tuple[str, ...] | None = YAML_SUFFIXES,
    ) -> None:
        self.folder = folder
        self.interval = interval
        self.suffixes = suffixes
        self._on_change = on_change
        self._signature: Signature | None = None
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> bool:
        """Check now; returns True when a change was submitted."""
        sig = folder_signature(self.folder, self.suffixes)
        if sig == self._signature:
            return False
        self._signature = sig
        await self._on_change(self.folder)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except Exception:  # a bad poll must not end watching; the error is logged
                log.exception("watching %s failed", self.folder)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch {self.folder}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
