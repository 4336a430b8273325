"""Delta: a requested EDS name that never exists settles on an empty CLA instead of being pushed forever."""

from __future__ import annotations

from xds.server.delta import DeltaStreamState
from xds.server.state import SyncState
from xds.testing.scripted import C, E, delta_names, dreq, sends, snap

BASE = {C: {"a": "ca", "static": "cs"}, E: {"a": "ea"}}  # "static" has no CLA (a STATIC cluster)


def test_never_existing_eds_name_is_answered_once_then_synced() -> None:
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (first,) = sends(st.handle_request(dreq(E, sub=["a", "static"])))
    assert delta_names(first) == (["a", "static"], [])  # empty CLA lets the cluster warm
    assert sends(st.handle_request(dreq(E, nonce=first.nonce))) == []  # ACK: nothing more owed
    (status,) = [ts for ts in st.type_status() if ts.type_url == E]
    assert status.state is SyncState.SYNCED
    # an unrelated snapshot change does not re-send nor remove it either
    assert sends(st.set_snapshot(snap({**BASE, C: {"a": "ca2", "static": "cs"}}))) == []


def test_eds_resource_that_disappears_is_removed_once() -> None:
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snap(BASE))
    (first,) = sends(st.handle_request(dreq(E, sub=["a"])))
    sends(st.handle_request(dreq(E, nonce=first.nonce)))
    (gone,) = sends(st.set_snapshot(snap({C: BASE[C], E: {}})))
    assert delta_names(gone) == ([], ["a"])
    assert sends(st.handle_request(dreq(E, nonce=gone.nonce))) == []  # no empty-CLA/removal ping-pong
