"""Tiny blocking HTTP client for the control-plane API (the CLI needs no event loop)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from xds.statedir import ENV_TOKEN, api_token, find_state_dir

DEFAULT_SERVER = "http://127.0.0.1:15010"
ENV_SERVER = "MECHA_SERVER"
UP_FILE = "up.json"  # written by `mecha up` in its state folder (xds/runner/up.py PID_FILE)
SERVER_HELP = (
    f"control-plane API URL (default: the running `mecha up` of .mecha/{UP_FILE} in this folder or a parent, "
    f"else ${ENV_SERVER}, else {DEFAULT_SERVER}; e.g. --server http://127.0.0.1:15110)"
)


def running_mesh_api(start: Path | None = None) -> str | None:
    """The API URL of the `mecha up` whose state folder is nearest (its up.json, while its pid lives)."""
    folder = find_state_dir(start)
    if folder is None:
        return None
    try:
        info = json.loads((folder / UP_FILE).read_text())
        pid, api = int(info.get("pid") or 0), info.get("api")
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not pid or not isinstance(api, str) or not _pid_alive(pid):
        return None  # a stale file: the mesh it names is gone
    return api


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def default_server() -> str:
    """A running `mecha up` found from here (so --port-offset needs no --server), else $MECHA_SERVER."""
    return running_mesh_api() or os.environ.get(ENV_SERVER) or DEFAULT_SERVER


class ServerUnavailable(RuntimeError):
    def __init__(self, server: str, reason: str) -> None:
        super().__init__(
            f"no control plane at {server} ({reason}); start it with `mecha up` or `mecha serve`"
            f" (or point --server / {ENV_SERVER} at it)"
        )


class ApiError(RuntimeError):
    """The server answered with an error; body is the decoded JSON (error + diagnostics)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error") or f"HTTP {status}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, server: str | None = None, token: str | None = None, timeout: float = 35.0) -> None:
        self.server = (server or default_server()).rstrip("/")
        self.token = api_token(token)  # --token, $MECHA_TOKEN, else the state folder's api-token
        self.timeout = timeout

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": raw.decode(errors="replace").strip() or exc.reason}
            if not isinstance(body, dict):
                body = {"error": str(body)}
            if exc.code == 401:
                where = "no token found" if not self.token else "the token was refused"
                body["error"] = (
                    f"{self.server} needs the API token ({where}): pass --token or set {ENV_TOKEN}, or run "
                    "from the folder holding .mecha/ (or set MECHA_STATE_DIR to the server's --state-dir)"
                )
            return_ok = body.get("accepted") is not None  # refused apply: the outcome is the answer
            if return_ok:
                return body
            raise ApiError(exc.code, body) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnavailable(self.server, str(reason)) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, payload)
