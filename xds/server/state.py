"""Pieces shared by the pure per-stream protocol states (sotw.py, delta.py): actions, errors, status."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import _len_field


class ProtocolError(ValueError):
    """A request the server cannot serve; the stream ends with INVALID_ARGUMENT and this message."""


# Peer-supplied text that the server repeats (status messages, logs, proxy status) is clipped: a 5,000-char
# type URL echoed into a gRPC status overflowed the client's 8 KB metadata limit (it saw RESOURCE_EXHAUSTED,
# not the reason), and every 100 KB NACK message was logged and kept whole.
MAX_ECHOED_CHARS = 200
MAX_NACK_MESSAGE_CHARS = 4096


def clip(text: str, limit: int) -> str:
    """text, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class SyncState(StrEnum):
    SYNCED = "SYNCED"  # the proxy ACKed what the current snapshot holds for this type
    STALE = "STALE"  # sent or pending, not ACKed yet
    NACKED = "NACKED"  # the last response for this type was rejected
    NOT_REQUESTED = "NOT_REQUESTED"  # the proxy never asked for this type


# ---------------------------------------------------------------- actions returned to the servicer


@dataclass(frozen=True, slots=True)
class Send:
    """Write this response. payload is the encoded DiscoveryResponse / DeltaDiscoveryResponse."""

    type_url: str
    nonce: str
    version: str
    payload: bytes
    resource_count: int
    removed_count: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    type_url: str
    version: str


@dataclass(frozen=True, slots=True)
class Nack:
    type_url: str
    version: str  # the version the proxy rejected
    message: str


@dataclass(frozen=True, slots=True)
class Converged:
    """Every requested type is ACKed at the versions of this snapshot (for the convergence metric)."""

    snapshot: Snapshot


Action = Send | Ack | Nack | Converged


@dataclass(frozen=True, slots=True)
class NackInfo:
    version: str
    message: str
    nonce: str


@dataclass(frozen=True, slots=True)
class TypeStatus:
    type_url: str
    snapshot_version: str
    sent_version: str
    sent_nonce: str
    acked_version: str
    nack: NackInfo | None
    state: SyncState

    @property
    def short_name(self) -> str:
        return types.short_name(self.type_url)


@dataclass(slots=True)
class TypeStateBase:
    """Per-type bookkeeping common to SotW and delta."""

    requested: bool = False
    wildcard: bool = False
    # subscribed names: one frozenset shared by every stream asking the same (replaced, never mutated)
    names: frozenset[str] = frozenset()
    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    synced_version: str = ""  # snapshot type version the proxy is confirmed to hold
    nack: NackInfo | None = None
    parked_version: str | None = None  # NACKed snapshot type version: send nothing until it changes
    # Snapshot type version last evaluated with an unchanged subscription: a new snapshot whose version
    # for this type is the same owes nothing, so the O(names) diff is skipped (most types, most pushes).
    evaluated_version: str | None = None


@functools.lru_cache(maxsize=8192)
def empty_cluster_load_assignment(cluster_name: str) -> Resource:
    """An empty CLA (only cluster_name, field 1): what istiod answers for a requested cluster with no
    endpoints, so Envoy finishes warming instead of waiting for initial_fetch_timeout."""
    return Resource.make(types.ENDPOINT, cluster_name, _len_field(0x0A, cluster_name.encode()))


S = TypeVar("S", bound=TypeStateBase)


class StreamStateBase(Generic[S]):
    """Type validation, per-type state, nonces, status and convergence; subclasses implement the flavour."""

    flavour = ""
    type_state: type[S]  # the flavour's per-type bookkeeping

    def __init__(self, ads: bool, type_url: str | None = None) -> None:
        if not ads and type_url not in types.TYPE_ORDER:
            raise ValueError(f"per-type stream needs a known type_url, got {type_url!r}")
        self.ads = ads
        self.fixed_type = None if ads else type_url
        self.snapshot: Snapshot | None = None
        self.types: dict[str, S] = {}
        self._nonce = 0
        self._converged_for: Snapshot | None = None

    def _state_for(self, type_url: str, message: str) -> tuple[str, S]:
        """The request's type (validated) and its state, created on first use."""
        t = self._resolve_type(type_url, message)
        st = self.types.get(t)
        if st is None:
            st = self.types[t] = self.type_state()
        return t, st

    def _next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    def _resolve_type(self, type_url: str, message: str) -> str:
        if self.fixed_type is not None:
            if type_url and type_url != self.fixed_type:
                raise ProtocolError(
                    f"{message}.type_url: {clip(repr(type_url), MAX_ECHOED_CHARS)} sent on the "
                    f"{types.short_name(self.fixed_type)} stream"
                )
            return self.fixed_type
        if not type_url:
            raise ProtocolError(f"{message}.type_url: required on an ADS stream")
        if type_url not in types.TYPE_ORDER:
            raise ProtocolError(
                f"{message}.type_url: unknown or unsupported type {clip(repr(type_url), MAX_ECHOED_CHARS)}"
            )
        return type_url

    def _check_converged(self, actions: list[Action]) -> None:
        snap = self.snapshot
        if snap is None or snap is self._converged_for:
            return
        requested = [(t, st) for t, st in self.types.items() if st.requested]
        if not requested:
            return
        if all(st.synced_version == snap.version(t) for t, st in requested):
            self._converged_for = snap
            actions.append(Converged(snap))

    def type_status(self) -> list[TypeStatus]:
        """Status of every type this stream serves (requested or not yet)."""
        out = []
        snap = self.snapshot
        for t, st in sorted(self.types.items(), key=lambda kv: types.TYPE_ORDER.index(kv[0])):
            snap_version = snap.version(t) if snap else ""
            if not st.requested:
                state = SyncState.NOT_REQUESTED
            elif st.nack is not None:
                state = SyncState.NACKED
            elif snap is not None and st.synced_version == snap_version:
                state = SyncState.SYNCED
            else:
                state = SyncState.STALE
            out.append(
                TypeStatus(t, snap_version, st.sent_version, st.sent_nonce, st.acked_version, st.nack, state)
            )
        return out
