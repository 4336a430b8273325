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

    def snapshot(self) -> tuple[set[str], dict[str, float]]:
        """(revoked ids, proxy -> cutoff): what replicas share through the config store."""
        return set(self._ids), dict(self._proxies)

    def merge(self, ids: set[str], proxies: dict[str, float]) -> bool:
        """Add revocations made elsewhere (another replica); True when something was new. Never un-revokes."""
        new_ids = ids - self._ids
        later = {p: c for p, c in proxies.items() if c > self._proxies.get(p, float("-inf"))}
        if not new_ids and not later:
            return False
        self._ids |= new_ids
        self._proxies.update(later)
        self._save()
        return True

    def is_revoked(self, cred: Credential) -> bool:
        cutoff = self._proxies.get(cred.proxy_id)
        return cred.jti in self._ids or (cutoff is not None and cred.issued_at <= cutoff)

    def _save(self) -> None:
        if self.path is not None:
            body = {"ids": sorted(self._ids), "proxies": self._proxies}
            write_private_file(self.path, json.dumps(body, indent=1, sort_keys=True))
