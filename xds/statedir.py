"""The state folder (`.mecha/` by default): config store, API token, CA root, bootstraps, logs.

Everything in it may be secret (tokens, keys, accepted config with credentials), so the folder is 0700 and
every file written here is 0600, created so (no window where it is world-readable) and replaced atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV_STATE_DIR = "MECHA_STATE_DIR"
DEFAULT_STATE_DIR = ".mecha"


def default_state_dir() -> Path:
    return Path(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR)


def ensure_private_dir(path: Path) -> Path:
    """Create path (and parents) if needed; the folder itself ends up 0700 whoever created it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: str | bytes) -> Path:
    """Write atomically as 0600 in a 0700 folder (a reader sees the old or the new file, never half)."""
    ensure_private_dir(path.parent)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---- where clients (the CLI, tests) find the running mesh's folder and token -----------------------------
# Kept here, free of aiohttp and the server modules, so `mecha apply` and friends start at once.
API_TOKEN_FILE = "api-token"
ENV_TOKEN = "MECHA_TOKEN"  # the CLI's token (content); else the token file of the state folder


def find_state_dir(start: Path | None = None) -> Path | None:
    """$MECHA_STATE_DIR, else the nearest `.mecha` folder in start (the current folder) or its parents."""
    if os.environ.get(ENV_STATE_DIR):
        return Path(os.environ[ENV_STATE_DIR]).expanduser()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_STATE_DIR).is_dir():
            return folder / DEFAULT_STATE_DIR
    return None


def read_token(state_dir: Path | None = None, name: str = API_TOKEN_FILE) -> str | None:
    folder = state_dir if state_dir is not None else find_state_dir()
    if folder is None:
        return None
    try:
        return (folder / name).read_text().strip() or None
    except OSError:
        return None


def api_token(explicit: str | None = None, state_dir: Path | None = None) -> str | None:
    """--token, else $MECHA_TOKEN, else the state folder's api-token file."""
    return explicit or os.environ.get(ENV_TOKEN) or read_token(state_dir)
