"""Revoked credentials: by id (jti), or every credential of a proxy issued up to a moment.

Kept as a small JSON file (0600) in the state folder behind this interface, so it can move into the
control plane's config store later without touching the callers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from xds.identity.credential import Credential
from xds.statedir import write_private_file

REVOCATIONS_FILE = "identity/revocations.json"


class RevocationList:
    def __init__(self, path: Path | None = None) -> None:
        """path None: in memory only (tests)."""
        self.path = path
        self._ids: set[str] = set()
        self._proxies: dict[str, float] = {}  # proxy id -> credentials issued at or before this are revoked
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self._ids = {str(j) for j in data.get("ids", [])}
                self._proxies = {str(k): float(v) for k, v in data.get("proxies", {}).items()}
            except (OSError, ValueError, AttributeError) as exc:
                raise ValueError(f"revocation list {path}: unreadable ({exc})") from None

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> RevocationList:
        return cls(state_dir / REVOCATIONS_FILE)

    def revoke_id(self, jti: str) -> None:
        self._ids.add(jti)
        self._save()

    def revoke_proxy(self, proxy_id: str, now: float | None = None) -> None:
        """Every credential of proxy_id issued so far (a re-issued one, later, is valid)."""
        self._proxies[proxy_id] = now if now is not None else time.time()
        self._save()

    def is_revoked(self, cred: Credential) -> bool:
        cutoff = self._proxies.get(cred.proxy_id)
        return cred.jti in self._ids or (cutoff is not None and cred.issued_at <= cutoff)

    def _save(self) -> None:
        if self.path is not None:
            body = {"ids": sorted(self._ids), "proxies": self._proxies}
            write_private_file(self.path, json.dumps(body, indent=1, sort_keys=True))
