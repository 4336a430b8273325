"""Pure SotW stream state: scripted request sequences against the xDS checklist (P, A, S, R, O rules)."""

from __future__ import annotations

import pytest

from xds.server.codec import decode_sotw_response
from xds.server.sotw import SotwStreamState
from xds.server.state import Ack, Converged, Nack, ProtocolError, SyncState
from xds.testing.scripted import C, E, L, R, S, sends, snap, sotw_names, sreq

BASE = {C: {"a": "ca", "b": "cb"}, E: {"a": "ea", "b": "eb"}, L: {"l": "l1"}, R: {"r": "r1"}}


def connected() -> tuple[SotwStreamState, dict[str, str]]:
    """A stream that went through Envoy's usual startup: CDS, EDS, LDS, RDS all ACKed."""
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    nonces = {}
    for t, names in ((C, []), (E, ["a", "b"]), (L, []), (R, ["r"])):
        (s,) = sends(st.handle_request(sreq(t, names)))
        nonces[t] = s.nonce
        st.handle_request(sreq(t, names, version=s.version, nonce=s.nonce))
    return st, nonces


def test_first_cds_request_is_wildcard_full_set_with_nonce_and_type_version() -> None:
    st = SotwStreamState(ads=True)
    snapshot = snap(BASE)
    st.set_snapshot(snapshot)
    (s,) = sends(st.handle_request(sreq(C)))
    decoded = decode_sotw_response(s.payload)
    assert decoded.type_url == C and decoded.nonce == s.nonce != ""  # P1
    assert decoded.version_info == snapshot.version(C)  # P3: per-type version
    assert sorted(sotw_names(s)) == ["a", "b"]


def test_nonces_increase_and_versions_are_per_type() -> None:
    st, nonces = connected()
    assert len(set(nonces.values())) == 4
    assert [int(n) for n in nonces.values()] == sorted(int(n) for n in nonces.values())
    status = {ts.short_name: ts for ts in st.type_status()}
    assert len({ts.sent_version for ts in status.values()}) == 4
    assert all(ts.state is SyncState.SYNCED for ts in status.values())


def test_ack_records_version_and_emits_ack_event() -> None:
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (s,) = sends(st.handle_request(sreq(C)))
    actions = st.handle_request(sreq(C, version=s.version, nonce=s.nonce))
    assert Ack(C, s.version) in actions
    assert not sends(actions)  # P7: nothing changed, nothing sent


def test_converged_event_once_all_requested_types_acked() -> None:
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap(BASE, changed_at=1.0))
    (s,) = sends(st.handle_request(sreq(C)))
    actions = st.handle_request(sreq(C, version=s.version, nonce=s.nonce))
    assert any(isinstance(a, Converged) for a in actions)
    (e,) = sends(st.handle_request(sreq(E, ["a"])))
    assert not any(isinstance(a, Converged) for a in st.handle_request(sreq(E, ["a"], e.version, "999")))


def test_stale_nonce_is_ignored() -> None:  # P5
    st, nonces = connected()
    st.set_snapshot(snap({**BASE, R: {"r": "r2"}}))
    actions = st.handle_request(sreq(R, ["r", "extra"], version="old", nonce=nonces[R]))  # superseded nonce
    assert actions == []
    assert st.types[R].names == {"r"}


def test_nothing_sent_when_snapshot_unchanged_for_type() -> None:  # P7
    st, _ = connected()
    actions = st.set_snapshot(snap({**BASE, R: {"r": "r2"}}))
    assert [s.type_url for s in sends(actions)] == [R]


def test_identical_new_snapshot_sends_nothing() -> None:
    st, _ = connected()
    assert sends(st.set_snapshot(snap(BASE))) == []


def test_ads_order_cds_eds_lds_rds_on_change() -> None:  # O1
    st, _ = connected()
    changed = {C: {"a": "ca2", "b": "cb"}, E: {"a": "ea2", "b": "eb"}, L: {"l": "l2"}, R: {"r": "r2"}}
    assert [s.type_url for s in sends(st.set_snapshot(snap(changed)))] == [C, E, L, R]


def test_eds_resent_when_cds_changes_a_cluster_even_if_cla_unchanged() -> None:
    st, _ = connected()
    out = sends(st.set_snapshot(snap({**BASE, C: {"a": "ca-new", "b": "cb"}})))
    assert [s.type_url for s in out] == [C, E]
    assert sorted(sotw_names(out[1])) == ["a", "b"]  # full requested set: a missing CLA would empty it


def test_cds_removal_is_the_full_new_set() -> None:  # R1
    st, _ = connected()
    (s,) = sends(st.set_snapshot(snap({**BASE, C: {"a": "ca"}})))
    assert s.type_url == C and sotw_names(s) == ["a"]


def test_empty_cds_response_deletes_all() -> None:  # R1
    st, _ = connected()
    out = sends(st.set_snapshot(snap({E: BASE[E], L: BASE[L], R: BASE[R]})))
    assert out[0].type_url == C and sotw_names(out[0]) == []


def test_eds_resubscription_with_last_nonce_is_answered() -> None:
    """Envoy trap: after CDS grows, the EDS request carries the LAST nonce and new names."""
    st, nonces = connected()
    ack_version = st.types[E].sent_version
    st.set_snapshot(snap({**BASE, C: {**BASE[C], "c": "cc"}, E: {**BASE[E], "c": "ec"}}))
    actions = st.handle_request(sreq(E, ["a", "b", "c"], version=ack_version, nonce=nonces[E]))
    (s,) = sends(actions)
    assert sorted(sotw_names(s)) == ["a", "b", "c"]  # S1: newly requested names sent


def test_missing_eds_name_gets_empty_cla() -> None:
    st, _ = connected()
    (s,) = sends(
        st.handle_request(sreq(E, ["a", "b", "ghost"], st.types[E].sent_version, st.types[E].sent_nonce))
    )
    assert sorted(sotw_names(s)) == ["a", "b", "ghost"]


def test_missing_rds_name_remembered_and_sent_when_it_appears() -> None:  # S3
    st, n = connected()
    actions = st.handle_request(sreq(R, ["r", "later"], st.types[R].sent_version, n[R]))
    assert sends(actions) == []  # nothing new exists
    assert st.types[R].missing == {"later"}
    (s,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "r1", "later": "x"}})))
    assert sorted(sotw_names(s)) == ["later", "r"]


def test_nack_parks_until_snapshot_changes_and_keeps_message() -> None:  # A1-A3
    st, _ = connected()
    good = st.types[R].sent_version
    (bad,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}})))
    actions = st.handle_request(sreq(R, ["r"], version=good, nonce=bad.nonce, error="invalid regex"))
    assert Nack(R, bad.version, "invalid regex") in actions and not sends(actions)
    status = {ts.short_name: ts for ts in st.type_status()}["RDS"]
    assert status.state is SyncState.NACKED
    assert (
        status.nack is not None
        and status.nack.message == "invalid regex"
        and status.nack.version == bad.version
    )
    assert status.acked_version == good
    # Same snapshot again (other types change): RDS stays parked, no NACK loop.
    out = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}, L: {"l": "l2"}})))
    assert [s.type_url for s in out] == [L]
    # Corrected snapshot: sent, then ACKed -> SYNCED.
    (fixed,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "good"}, L: {"l": "l2"}})))
    st.handle_request(sreq(R, ["r"], version=fixed.version, nonce=fixed.nonce))
    assert {ts.short_name: ts for ts in st.type_status()}["RDS"].state is SyncState.SYNCED


def test_legacy_wildcard_then_named_then_empty_means_unsubscribe() -> None:  # S2, the spec's 4-step example
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap({L: {"x": "1", "y": "2"}}))
    (s1,) = sends(st.handle_request(sreq(L)))  # 1. empty names: legacy wildcard
    assert sorted(sotw_names(s1)) == ["x", "y"]
    (s2,) = sends(st.handle_request(sreq(L, ["x"], s1.version, s1.nonce)))  # 2. names x: no longer wildcard
    assert sotw_names(s2) == ["x"] and st.types[L].wildcard is False
    st.handle_request(sreq(L, ["*", "x"], s2.version, s2.nonce))  # 3. explicit "*": wildcard again
    assert st.types[L].wildcard is True
    st.handle_request(
        sreq(L, [], s2.version, st.types[L].sent_nonce)
    )  # 4. empty after names: unsubscribe all
    assert st.types[L].wildcard is False and st.types[L].names == set()


def test_reconnect_with_current_version_skips_wildcard_resend() -> None:  # P4
    snapshot = snap(BASE)
    st = SotwStreamState(ads=True)
    st.set_snapshot(snapshot)
    actions = st.handle_request(sreq(C, version=snapshot.version(C)))
    assert sends(actions) == []
    assert {ts.short_name: ts for ts in st.type_status()}["CDS"].state is SyncState.SYNCED
    # Different version on reconnect: full set is sent.
    st2 = SotwStreamState(ads=True)
    st2.set_snapshot(snapshot)
    assert len(sends(st2.handle_request(sreq(C, version="old")))) == 1


def test_reconnect_before_first_snapshot_still_skips() -> None:
    snapshot = snap(BASE)
    st = SotwStreamState(ads=True)
    assert st.handle_request(sreq(C, version=snapshot.version(C))) == []
    assert sends(st.set_snapshot(snapshot)) == []


def test_unrequested_types_are_not_pushed() -> None:
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    sends(st.handle_request(sreq(C)))
    assert sends(st.set_snapshot(snap({**BASE, L: {"l": "changed"}, S: {"s": "1"}}))) == []


def test_no_duplicate_names_in_a_response() -> None:  # R3
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (s,) = sends(st.handle_request(sreq(E, ["a", "a", "b"])))
    names = sotw_names(s)
    assert len(names) == len(set(names))


def test_ads_requires_type_url_and_known_types() -> None:
    st = SotwStreamState(ads=True)
    with pytest.raises(ProtocolError, match="type_url: required"):
        st.handle_request(sreq(""))
    with pytest.raises(ProtocolError, match="unknown or unsupported type"):
        st.handle_request(sreq("type.googleapis.com/envoy.Nope"))


def test_per_type_stream_accepts_empty_type_and_rejects_other_types() -> None:
    st = SotwStreamState(ads=False, type_url=C)
    st.set_snapshot(snap(BASE))
    (s,) = sends(st.handle_request(sreq("")))
    assert s.type_url == C
    with pytest.raises(ProtocolError, match="sent on the CDS stream"):
        st.handle_request(sreq(L))
