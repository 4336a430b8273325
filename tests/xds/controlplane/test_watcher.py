"""FolderWatcher: submits once at start, then on add / edit / remove of YAML files only."""

from __future__ import annotations

import os
from pathlib import Path

from xds.controlplane.watcher import FolderWatcher, folder_signature


async def test_watcher_reports_add_edit_remove(tmp_path: Path) -> None:
    calls: list[Path] = []

    async def on_change(folder: Path) -> None:
        calls.append(folder)

    watcher = FolderWatcher(tmp_path, on_change, interval=0.01)
    assert await watcher.poll_once() is True  # initial load, even of an empty folder
    assert await watcher.poll_once() is False
    f = tmp_path / "sub" / "a.yaml"
    f.parent.mkdir()
    f.write_text("a: 1\n")
    assert await watcher.poll_once() is True
    (tmp_path / "notes.txt").write_text("ignored")
    assert await watcher.poll_once() is False
    f.write_text("a: 22\n")  # size changes even if mtime granularity is coarse
    os.utime(f, ns=(1, 1))
    assert await watcher.poll_once() is True
    f.unlink()
    assert await watcher.poll_once() is True
    assert calls == [tmp_path] * 4


def test_signature_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert folder_signature(tmp_path / "nope") == {}
