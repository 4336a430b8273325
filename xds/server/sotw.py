"""Pure state-of-the-world stream state: feed requests and snapshots, get actions back (no I/O).

Rules (checklist ids from shared/reference/xds-protocol.md):
- nonce per response (P1); version per type (P3); a stale nonce is ignored (P5); only changes are sent (P7);
- NACK = error_detail; the type is parked until its snapshot version changes (A1-A3);
- wildcard / legacy wildcard for CDS/LDS (S2); newly requested names are answered even when the request
  carries the last nonce (S1, the EDS re-subscription trap);
- LDS/CDS responses are the full set (R1); EDS/RDS responses carry every requested name (Envoy treats a CLA
  missing from a SotW EDS response as empty); a missing EDS name gets an empty CLA;
- ADS order CDS, EDS, LDS, RDS, SDS (O1); EDS is re-sent when CDS changed clusters Envoy will re-warm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import SotwRequest, encode_sotw_response
from xds.server.state import (
    Ack,
    Action,
    Nack,
    NackInfo,
    Send,
    StreamStateBase,
    TypeStateBase,
    empty_cluster_load_assignment,
)


@dataclass(slots=True)
class SotwTypeState(TypeStateBase):
    ever_named: bool = False
    client_version: str = ""  # version_info of the first request (reconnect: what the proxy already holds)
    sent_view: dict[str, str] | None = None  # name -> resource version in the last response
    acked_nonce: str = ""
    force: bool = False  # re-send even if the view is unchanged (EDS after CDS re-warms clusters)
    missing: set[str] = field(default_factory=set)  # requested names that do not exist (S3)


class SotwStreamState(StreamStateBase):
    flavour = "sotw"

    def __init__(self, ads: bool, type_url: str | None = None) -> None:
        super().__init__(ads, type_url)
        self.types: dict[str, SotwTypeState] = {}

    def _types(self) -> dict[str, SotwTypeState]:  # type: ignore[override]
        return self.types

    # ---------------------------------------------------------------- inputs

    def handle_request(self, req: SotwRequest) -> list[Action]:
        """One DiscoveryRequest in, the actions it causes out. Raises ProtocolError for unusable requests."""
        t = self._resolve_type(req.type_url, "DiscoveryRequest")
        st = self.types.get(t)
        if st is None:
            st = self.types[t] = SotwTypeState()
        st.evaluated_version = None
        actions: list[Action] = []
        if req.response_nonce:
            if req.response_nonce != st.sent_nonce:
                return actions  # P5: stale nonce (superseded, or from an earlier stream)
            if req.error_detail is not None:
                st.nack = NackInfo(st.sent_version, req.error_detail.message, st.sent_nonce)
                st.parked_version = st.sent_version
                st.acked_version = req.version_info
                self._update_subscription(t, st, req.resource_names)
                actions.append(Nack(t, st.sent_version, req.error_detail.message))
                return actions  # A3: nothing owed until the snapshot changes
            st.acked_version = req.version_info
            st.acked_nonce = req.response_nonce
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
        st.names = {n for n in names if n != "*"}

    def _view(self, t: str, st: SotwTypeState, snap: Snapshot) -> list[Resource]:
        present = snap.of(t)
        if st.wildcard:
            found = list(present.values())
            extra = sorted(st.names - present.keys())
        else:
            found, extra = [], sorted(st.names)
            for name in sorted(st.names):
                if name in present:
                    found.append(present[name])
            extra = [n for n in extra if n not in present]
        st.missing = set()
        for name in extra:
            if t == types.ENDPOINT:
                found.append(empty_cluster_load_assignment(name))
            else:
                st.missing.add(name)
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
        resources = self._view(t, st, snap)
        view = {r.name: r.version for r in resources}
        if st.sent_view is None and st.client_version and st.wildcard and st.client_version == version:
            # P4: reconnecting proxy already holds this exact full set; adopt it instead of re-sending.
            st.sent_view, st.sent_version = view, version
            st.acked_version = st.synced_version = version
            return
        if view == st.sent_view and not st.force:
            if st.acked_nonce == st.sent_nonce and st.nack is None:
                st.synced_version = version  # nothing this proxy holds changed
            return
        if not st.wildcard and not resources:
            return  # nothing requested exists yet (S3: sent when it appears)
        if t == types.CLUSTER:
            self._force_eds_for_rewarmed(st.sent_view, view)
        nonce = self._next_nonce()
        payload = encode_sotw_response(version, t, nonce, resources)
        st.sent_view, st.sent_version, st.sent_nonce, st.force = view, version, nonce, False
        actions.append(Send(t, nonce, version, payload, len(resources)))

    def _force_eds_for_rewarmed(self, old: dict[str, str] | None, new: dict[str, str]) -> None:
        eds = self.types.get(types.ENDPOINT)
        if eds is None or old is None:
            return
        changed = {name for name, version in new.items() if name in old and old[name] != version}
        if changed & eds.names:
            eds.force = True
