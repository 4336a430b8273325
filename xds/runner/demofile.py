"""The demo's `demo.yaml` in the watched folder: written by `mecha up`, kept once the user has edited it.

Beside it, `.demo.yaml.sha256` records what `mecha up` last wrote. A file that still matches is ours and is
rewritten (its ports follow --port-offset); one that differs was edited by the user and is kept as it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xds.statedir import write_private_file

DEMO_FILE = "demo.yaml"
STAMP_FILE = ".demo.yaml.sha256"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_demo_config(folder: Path, rendered: str) -> str | None:
    """Write the demo config unless the user edited the previous one; returns a note when it was kept."""
    path, stamp = folder / DEMO_FILE, folder / STAMP_FILE
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current is not None and current != rendered:
        written_by_us = stamp.is_file() and stamp.read_text().strip() == _digest(current)
        if not written_by_us:
            return (
                f"kept your edited {path} (not overwritten with the demo's; delete it to get the demo's back;"
                " its ports are the ones you wrote, whatever --port-offset says)"
            )
    write_private_file(path, rendered)
    write_private_file(stamp, _digest(rendered) + "\n")
    return None
