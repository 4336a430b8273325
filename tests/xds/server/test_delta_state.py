"""Pure delta stream state: scripted request sequences against the xDS checklist (D1-D8, O1, A1-A3)."""

from __future__ import annotations

import pytest

from xds.server.delta import DeltaStreamState
from xds.server.state import Ack, Nack, ProtocolError, SyncState
from xds.testing.scripted import C, E, L, R, delta_decoded, delta_names, dreq, sends, snap

BASE = {C: {"a": "ca", "b": "cb"}, E: {"a": "ea", "b": "eb"}, L: {"l": "l1"}, R: {"r": "r1"}}


def connected() -> DeltaStreamState:
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    for t, names in ((C, []), (E, ["a", "b"]), (L, []), (R, ["r"])):
        (s,) = sends(st.handle_request(dreq(t, names)))
        st.handle_request(dreq(t, nonce=s.nonce))
    return st


def test_legacy_wildcard_first_request_gets_everything_with_versions() -> None:
    st = DeltaStreamState(ads=True)
    snapshot = snap(BASE)
    st.set_snapshot(snapshot)
    (s,) = sends(st.handle_request(dreq(C)))
    d = delta_decoded(s)
    assert sorted(r.name for r in d.resources) == ["a", "b"]
    assert {r.name: r.version for r in d.resources} == {n: r.version for n, r in snapshot.of(C).items()}
    assert d.nonce == s.nonce and d.version_info == snapshot.version(C)


def test_ack_by_nonce_without_version() -> None:  # D1
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (s,) = sends(st.handle_request(dreq(C)))
    assert Ack(C, s.version) in st.handle_request(dreq(C, nonce=s.nonce))
    assert {t.short_name: t for t in st.type_status()}["CDS"].state is SyncState.SYNCED


def test_only_changed_resources_are_sent() -> None:  # D7, P7
    st = connected()
    (s,) = sends(st.set_snapshot(snap({**BASE, E: {"a": "ea2", "b": "eb"}})))
    assert delta_names(s) == (["a"], [])
    assert sends(st.set_snapshot(snap({**BASE, E: {"a": "ea2", "b": "eb"}}))) == []


def test_order_upserts_then_cds_eds_removals_last() -> None:  # O1, make-before-break
    st = connected()
    new = {C: {"b": "cb2"}, E: {"b": "eb2"}, L: {"l": "l2"}, R: {"r": "r2"}}
    out = sends(st.set_snapshot(snap(new)))
    assert [(s.type_url, delta_names(s)) for s in out] == [
        (C, (["b"], [])),
        (E, (["b"], [])),
        (L, (["l"], [])),
        (R, (["r"], [])),
        (C, ([], ["a"])),
        (E, ([], ["a"])),
    ]


def test_initial_resource_versions_skip_unchanged_on_reconnect() -> None:  # D3
    snapshot = snap(BASE)
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snapshot)
    initial = {"a": snapshot.of(C)["a"].version, "b": "stale"}
    (s,) = sends(st.handle_request(dreq(C, initial=initial)))
    assert delta_names(s) == (["b"], [])


def test_initial_versions_of_deleted_resources_are_removed() -> None:
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (s,) = sends(st.handle_request(dreq(C, initial={"gone": "v"})))
    assert delta_names(s) == (["a", "b"], ["gone"])


def test_resubscribe_to_held_resource_is_answered() -> None:  # D4
    st = connected()
    (s,) = sends(st.handle_request(dreq(R, sub=["r"])))
    assert delta_names(s) == (["r"], [])


def test_unsubscribe_unknown_is_ignored_and_pure_unsubscribe_owes_nothing() -> None:  # D5
    st = connected()
    assert sends(st.handle_request(dreq(R, unsub=["never-heard-of"]))) == []
    assert sends(st.handle_request(dreq(R, unsub=["r"]))) == []
    assert st.types[R].names == set()


def test_wildcard_plus_name_unsubscribe_reports_the_name() -> None:  # D5 exception
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap({L: {"x": "1", "y": "2"}}))
    (s,) = sends(st.handle_request(dreq(L, sub=["*", "x"])))
    st.handle_request(dreq(L, nonce=s.nonce))
    (s2,) = sends(st.handle_request(dreq(L, unsub=["x"])))
    assert delta_names(s2) == (["x"], [])  # still wanted through "*": re-sent
    # A name that does not exist under "*": reported removed on subscribe, nothing more on unsubscribe.
    (s3,) = sends(st.handle_request(dreq(L, sub=["ghost"], nonce=s2.nonce)))
    assert delta_names(s3) == ([], ["ghost"])
    assert sends(st.handle_request(dreq(L, unsub=["ghost"]))) == []


def test_missing_names_go_to_removed_once_but_eds_gets_empty_cla() -> None:  # D6
    st = connected()
    (s,) = sends(st.handle_request(dreq(R, sub=["nope"])))
    assert delta_names(s) == ([], ["nope"])
    assert sends(st.set_snapshot(snap({**BASE, L: {"l": "l9"}})))[0].type_url == L  # not repeated for R
    (e,) = sends(st.handle_request(dreq(E, sub=["ghost"])))
    assert delta_names(e) == (["ghost"], [])


def test_missing_name_sent_when_it_appears() -> None:  # S3
    st = connected()
    sends(st.handle_request(dreq(R, sub=["later"])))
    (s,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "r1", "later": "x"}})))
    assert delta_names(s) == (["later"], [])


def test_subscription_honoured_with_stale_nonce() -> None:  # D2
    st = connected()
    (s,) = sends(st.handle_request(dreq(E, sub=["c"], nonce="1")))
    assert delta_names(s) == (["c"], [])


def test_new_cluster_then_eds_subscribe() -> None:
    st = connected()
    (c,) = sends(st.set_snapshot(snap({**BASE, C: {**BASE[C], "c": "cc"}, E: {**BASE[E], "c": "ec"}})))
    assert delta_names(c) == (["c"], [])
    (e,) = sends(st.handle_request(dreq(E, sub=["c"])))
    assert delta_names(e) == (["c"], [])


def test_changed_cluster_gets_its_cla_resent() -> None:
    st = connected()
    out = sends(st.set_snapshot(snap({**BASE, C: {"a": "ca-new", "b": "cb"}})))
    assert [(s.type_url, delta_names(s)) for s in out] == [(C, (["a"], [])), (E, (["a"], []))]


def test_nack_parks_reverts_and_keeps_message() -> None:  # A1-A3
    st = connected()
    (bad,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}})))
    actions = st.handle_request(dreq(R, nonce=bad.nonce, error="missing ): (x"))
    assert Nack(R, bad.version, "missing ): (x") in actions and not sends(actions)
    ts = {t.short_name: t for t in st.type_status()}["RDS"]
    assert ts.state is SyncState.NACKED and ts.nack is not None and ts.nack.message == "missing ): (x"
    assert sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}}))) == []  # no NACK loop
    (fixed,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "good"}})))
    st.handle_request(dreq(R, nonce=fixed.nonce))
    assert {t.short_name: t for t in st.type_status()}["RDS"].state is SyncState.SYNCED


def test_reapplying_the_config_held_before_a_nack_is_synced_without_a_send() -> None:
    st = connected()
    (bad,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}})))
    st.handle_request(dreq(R, nonce=bad.nonce, error="no"))
    # The proxy still holds r1: going back to it owes nothing, and the type is no longer NACKED.
    assert sends(st.set_snapshot(snap(BASE))) == []
    ts = {t.short_name: t for t in st.type_status()}["RDS"]
    assert ts.state is SyncState.SYNCED and ts.nack is None


def test_nack_revert_resends_rejected_resource_when_type_changes_elsewhere() -> None:
    st = connected()
    (bad,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad"}})))
    st.handle_request(dreq(R, nonce=bad.nonce, error="no"))
    (s,) = sends(st.set_snapshot(snap({**BASE, R: {"r": "bad", "r2": "new"}})))
    assert delta_names(s) == (["r"], [])  # the proxy never accepted "bad": re-sent (r2 is not subscribed)


def test_unsubscribe_star_drops_wildcard() -> None:
    st = connected()
    st.handle_request(dreq(C, unsub=["*"]))
    assert st.types[C].wildcard is False
    assert sends(st.set_snapshot(snap({**BASE, C: {"a": "x", "b": "y", "c": "z"}}))) == []


def test_unknown_type_rejected() -> None:
    with pytest.raises(ProtocolError, match=r"DeltaDiscoveryRequest\.type_url"):
        DeltaStreamState(ads=True).handle_request(dreq("type.googleapis.com/nope"))
