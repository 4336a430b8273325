"""Pure state-of-the-world stream state: feed requests and snapshots, get actions back (no I/O).

Rules (ids of the xDS protocol checklist the tests name):
- nonce per response (P1); version per type (P3); a stale nonce is ignored (P5); only changes are sent (P7);
- NACK = error_detail; the type is parked until its snapshot version changes (A1-A3);
- wildcard / legacy wildcard for CDS/LDS (S2); newly requested names are answered even when the request
  carries the last nonce (S1, the EDS re-subscription trap);
- LDS/CDS responses are the full set (R1); EDS responses carry every requested name (Envoy treats a CLA
  missing from a SotW EDS response as empty); a missing EDS name gets an empty CLA; an RDS response carries
  every requested name when the names changed, else only the route configurations that changed (R2);
- ADS order CDS, EDS, LDS, RDS, SDS (O1); EDS is re-sent when CDS changed clusters Envoy will re-warm.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from xds import types
from xds.cache.snapshot import Resource, Snapshot, changed_names
from xds.server.codec import SotwRequest, encode_sotw_response
from xds.server.state import (
    MAX_NACK_MESSAGE_CHARS,
    Ack,
    Action,
    Nack,
    NackInfo,
    Send,
    StreamStateBase,
    TypeStateBase,
    clip,
    empty_cluster_load_assignment,
)


@dataclass(frozen=True, slots=True, eq=False)
class View:
    """What one response carries: resources in order, by name (for "unchanged?" checks), missing names.

    Never copied per stream: a wildcard view wraps the snapshot's own mapping, and a named view (EDS, RDS)
    is shared by every stream that asks the same names of the same type version (see _VIEWS).
    """

    resources: Collection[Resource]
    by_name: Mapping[str, Resource]
    missing: frozenset[str] = frozenset()
    source: Mapping[str, Resource] | None = None  # the snapshot mapping it was built from
    names: frozenset[str] | None = None  # the subscription it answers (named views)
    order: tuple[str, ...] = ()  # names of `resources`, in order (named views)

    def matches(self, present: Mapping[str, Resource]) -> bool:
        """Still what `present` yields (a cached view is keyed by type version; this guards against two
        snapshots that reuse a version for other bodies). Identity first: shared maps cost nothing."""
        if self.source is present:
            return True
        for name, res in self.by_name.items():
            held = present.get(name)
            if held is res or (held is None and res.type_url == types.ENDPOINT):  # empty CLA stand-in
                continue
            if held != res:
                return False
        return not (self.missing & present.keys())

    def same_content(self, other: View | None) -> bool:
        return other is not None and (other is self or other.by_name == self.by_name)


K = TypeVar("K")
V = TypeVar("V")


class _SharedCache(OrderedDict[K, V]):
    """A small LRU of shared, immutable values (name sets, views), bounded by a total weight."""

    def __init__(self, max_weight: int) -> None:
        super().__init__()
        self.max_weight = max_weight
        self.weight = 0
        self._weights: dict[K, int] = {}

    def lookup(self, key: K) -> V | None:
        found = self.get(key)
        if found is not None:
            self.move_to_end(key)
        return found

    def clear(self) -> None:
        super().clear()
        self._weights.clear()
        self.weight = 0

    def store(self, key: K, value: V, weight: int) -> None:
        self[key] = value
        self._weights[key] = weight
        self.weight += weight
        while self.weight > self.max_weight and len(self) > 1:
            old, _ = self.popitem(last=False)
            self.weight -= self._weights.pop(old)


# Interned subscriptions: every proxy asks EDS for the same thousands of cluster names; one frozenset (and one
# string object per name) is kept instead of one set per stream.
_NAME_SETS: _SharedCache[frozenset[str], frozenset[str]] = _SharedCache(max_weight=200_000)
# Named views by (type, type version, wildcard, names): about one per proxy for RDS (its own inbound route
# configuration), one for EDS.
_VIEWS: _SharedCache[tuple[str, str, bool, frozenset[str]], View] = _SharedCache(max_weight=100_000)
_NO_NAMES: frozenset[str] = frozenset()


def shared_names(names: Iterable[str]) -> frozenset[str]:
    """The canonical frozenset equal to `names` (without "*"), shared across streams."""
    wanted = frozenset(names) - _STAR
    if not wanted:
        return _NO_NAMES
    found = _NAME_SETS.lookup(wanted)
    if found is not None:
        return found  # the usual case: an ACK repeats the names
    wanted = frozenset(map(sys.intern, wanted))
    _NAME_SETS.store(wanted, wanted, len(wanted))
    return wanted


_STAR = frozenset({"*"})


@dataclass(slots=True)
class SotwTypeState(TypeStateBase):
    ever_named: bool = False
    client_version: str = ""  # version_info of the first request (reconnect: what the proxy already holds)
    sent_view: View | None = None  # what the last response carried (shared, never a per-stream copy)
    acked_view: View | None = None  # what the proxy confirmed holding (the view of the last ACKed response)
    acked_nonce: str = ""
    force: bool = False  # re-send even if the view is unchanged (EDS after CDS re-warms clusters)
    missing: frozenset[str] = field(default_factory=frozenset)  # requested names that do not exist (S3)


class SotwStreamState(StreamStateBase[SotwTypeState]):
    type_state = SotwTypeState
    flavour = "sotw"

    # ---------------------------------------------------------------- inputs

    def handle_request(self, req: SotwRequest) -> list[Action]:
        """One DiscoveryRequest in, the actions it causes out. Raises ProtocolError for unusable requests."""
        t, st = self._state_for(req.type_url, "DiscoveryRequest")
        st.evaluated_version = None
        actions: list[Action] = []
        if req.response_nonce:
            if req.response_nonce != st.sent_nonce:
                return actions  # P5: stale nonce (superseded, or from an earlier stream)
            if req.error_detail is not None:
                detail = clip(req.error_detail.message, MAX_NACK_MESSAGE_CHARS)
                st.nack = NackInfo(st.sent_version, detail, st.sent_nonce)
                st.parked_version = st.sent_version
                st.acked_version = req.version_info
                self._update_subscription(t, st, req.resource_names)
                actions.append(Nack(t, st.sent_version, detail))
                return actions  # A3: nothing owed until the snapshot changes
            st.acked_version = req.version_info
            st.acked_nonce = req.response_nonce
            st.acked_view = st.sent_view
            st.nack = None
            st.parked_version = None
            if req.version_info == st.sent_version:
                st.synced_version = st.sent_version
            actions.append(Ack(t, req.version_info))
        elif not st.requested:
            st.client_version = req.version_info
        st.requested = True
        self._update_subscription(t, st, req.resource_names)
        self._respond(t, st, actions)
        eds = self.types.get(types.ENDPOINT)
        if t == types.CLUSTER and eds is not None and eds.force:
            self._respond(types.ENDPOINT, eds, actions)  # CLAs of re-warmed clusters
        self._check_converged(actions)
        return actions

    def set_snapshot(self, snapshot: Snapshot) -> list[Action]:
        """A new snapshot for this proxy: responses for every requested type that changed, in ADS order."""
        self.snapshot = snapshot
        actions: list[Action] = []
        for t in types.TYPE_ORDER:
            st = self.types.get(t)
            if st is not None and (st.force or st.evaluated_version != snapshot.version(t)):
                self._respond(t, st, actions)
        self._check_converged(actions)
        return actions

    # ---------------------------------------------------------------- internals

    def _update_subscription(self, t: str, st: SotwTypeState, names: list[str]) -> None:
        if names:
            st.ever_named = True
        if "*" in names:
            st.wildcard = True
        else:
            # Legacy wildcard (S2): CDS/LDS streams that never named a resource.
            st.wildcard = t in types.WILDCARD_TYPES and not st.ever_named
        st.names = shared_names(names)

    def _view(self, t: str, st: SotwTypeState, snap: Snapshot) -> View:
        present = snap.of(t)
        if st.wildcard and not st.names:
            return View(present.values(), present)  # the snapshot's own mapping, not a copy
        key = (t, snap.version(t), st.wildcard, st.names)
        found = _VIEWS.lookup(key)
        if found is None or not found.matches(present):
            previous = st.sent_view
            if (
                t == types.ROUTE
                and previous is not None
                and previous.names is st.names
                and previous.source is not None
                and not st.wildcard
            ):
                found = _updated_view(previous, present)  # 1,000 route tables, a few changed
            else:
                found = _build_view(t, st.wildcard, st.names, present)
            _VIEWS.store(key, found, len(found.resources) + 1)
        return found

    def _respond(self, t: str, st: SotwTypeState, actions: list[Action]) -> None:
        snap = self.snapshot
        if snap is None or not st.requested:
            return
        version = snap.version(t)
        if st.parked_version is not None:
            if st.parked_version == version:
                return
            st.parked_version = None
        st.evaluated_version = version
        view = self._view(t, st, snap)
        st.missing = view.missing
        resources = view.resources
        if st.sent_view is None and st.client_version and st.wildcard and st.client_version == version:
            # P4: reconnecting proxy already holds this exact full set; adopt it instead of re-sending.
            st.sent_view, st.sent_version = view, version
            st.acked_version = st.synced_version = version
            return
        if view.same_content(st.sent_view) and not st.force:
            if st.acked_nonce == st.sent_nonce and st.nack is None:
                st.synced_version = version  # nothing this proxy holds changed
            return
        if not st.wildcard and not resources:
            return  # nothing requested exists yet (S3: sent when it appears)
        if t == types.CLUSTER:
            self._force_eds_for_rewarmed(st.sent_view, view)
        sent = st.sent_view  # not None when _same_names holds
        if t == types.ROUTE and sent is not None and self._same_names(st, view):
            # R2: a SotW RDS response may carry only the route configurations that changed; Envoy updates
            # the ones it names and keeps the others (with scoped routing, 1 of ~1,000 per edit)
            resources = _changed_resources(sent, view)
        nonce = self._next_nonce()
        payload = encode_sotw_response(version, t, nonce, resources)
        st.sent_view, st.sent_version, st.sent_nonce, st.force = view, version, nonce, False
        actions.append(Send(t, nonce, version, payload, len(resources)))

    @staticmethod
    def _same_names(st: SotwTypeState, view: View) -> bool:
        """The proxy ACKed the last response, nothing is in flight, and it named exactly what this one
        would: then a partial response is enough (a stale NACK could otherwise hide a divergence)."""
        old = st.acked_view
        return (
            old is not None
            and old is st.sent_view
            and st.acked_nonce == st.sent_nonce
            and st.nack is None
            and not st.force
            and not st.wildcard
            and not view.missing
            and not old.missing
            and old.by_name.keys() == view.by_name.keys()
        )

    def _force_eds_for_rewarmed(self, old: View | None, new: View) -> None:
        eds = self.types.get(types.ENDPOINT)
        if eds is None or old is None or not eds.names:
            return
        before = old.by_name
        for name in eds.names:
            now, then = new.by_name.get(name), before.get(name)
            if now is not None and then is not None and now.version != then.version:
                eds.force = True
                return


def _build_view(t: str, wildcard: bool, names: frozenset[str], present: Mapping[str, Resource]) -> View:
    """Resources for a named (or wildcard + names) subscription. EDS names that do not exist get an empty
    CLA; other missing names are reported in View.missing (S3: sent once they appear)."""
    if wildcard:
        found = list(present.values())
        extra = sorted(names - present.keys())
    else:
        found = [present[n] for n in sorted(names) if n in present]
        extra = sorted(n for n in names if n not in present)
    missing = []
    for name in extra:
        if t == types.ENDPOINT:
            found.append(empty_cluster_load_assignment(name))
        else:
            missing.append(name)
    return View(
        tuple(found),
        {r.name: r for r in found},
        frozenset(missing),
        present,
        names,
        tuple(r.name for r in found),
    )


def _updated_view(previous: View, present: Mapping[str, Resource]) -> View:
    """previous (a named RDS view) brought up to date with `present`: only the names that changed between
    the two snapshot mappings are looked at (that set is shared by every stream of the push)."""
    assert previous.source is not None and previous.names is not None
    changed = changed_names(previous.source, present) & previous.names
    if not changed:
        return View(
            previous.resources, previous.by_name, previous.missing, present, previous.names, previous.order
        )
    by_name = dict(previous.by_name)
    missing = set(previous.missing)
    for name in changed:
        res = present.get(name)
        if res is None:
            by_name.pop(name, None)
            missing.add(name)
        else:
            by_name[name] = res
            missing.discard(name)
    same_names = all((n in by_name) == (n in previous.by_name) for n in changed)
    order = previous.order if same_names else tuple(sorted(by_name))
    resources = tuple(map(by_name.__getitem__, order))
    return View(resources, by_name, frozenset(missing), present, previous.names, order)


def _changed_resources(old: View, new: View) -> list[Resource]:
    """What differs in `new` from `old` (two views of the same names), by the snapshot mappings they came
    from when both have one (a shared, cached comparison), else entry by entry."""
    if old.source is not None and new.source is not None and new.names is not None:
        changed = changed_names(old.source, new.source) & new.names
    else:
        changed = changed_names(old.by_name, new.by_name)
    return [new.by_name[n] for n in sorted(changed) if n in new.by_name]
