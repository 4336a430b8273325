"""What the server reports per connected proxy (CLI `status`, admin API)."""

from __future__ import annotations

from dataclasses import dataclass

from xds.proxy import ProxyIdentity
from xds.server.state import SyncState, TypeStatus

_SEVERITY = {SyncState.NACKED: 3, SyncState.STALE: 2, SyncState.SYNCED: 1, SyncState.NOT_REQUESTED: 0}


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    proxy_id: str
    identity: ProxyIdentity  # includes the admin address, so the CLI can read the proxy's admin API
    mode: str
    peer: str  # gRPC peer of the (first) stream, e.g. "ipv4:127.0.0.1:51234"
    connected_at: float  # time.time() when the first stream of this proxy opened
    flavour: str  # "sotw" | "delta"
    transport: str  # "ads" | "per-type"
    config_version: str  # Snapshot.config_version the proxy is being served
    types: tuple[TypeStatus, ...]

    @property
    def state(self) -> SyncState:
        """Worst per-type state among requested types: NACKED > STALE > SYNCED."""
        worst = SyncState.SYNCED
        for ts in self.types:
            if ts.state is not SyncState.NOT_REQUESTED and _SEVERITY[ts.state] > _SEVERITY[worst]:
                worst = ts.state
        return worst

    def type(self, short_or_url: str) -> TypeStatus | None:
        """Status of one type by short name ("RDS") or type URL."""
        for ts in self.types:
            if short_or_url in (ts.type_url, ts.short_name):
                return ts
        return None
