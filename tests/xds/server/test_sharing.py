"""Per-stream state and encodings are shared across streams, never copied per proxy (memory, push CPU)."""

from __future__ import annotations

import gc

from xds.cache.snapshot import Resource, Snapshot
from xds.server import codec
from xds.server.codec import decode_delta_response, decode_sotw_response, encode_sotw_response
from xds.server.delta import DeltaStreamState
from xds.server.sotw import SotwStreamState
from xds.testing.scripted import C, E, L, R, dreq, res, sends, snap, sotw_names, sreq

MESH = {
    C: {f"c{i}": f"cluster {i}" for i in range(50)},
    E: {f"c{i}": f"endpoints {i}" for i in range(50)},
    L: {"l": "listener"},
    R: {"r": "route"},
}


def decoded_names(names: list[str]) -> list[str]:
    """Fresh string objects, as each stream's decoded request carries."""
    return [n.encode().decode() for n in names]


def synced_sotw(snapshot: Snapshot) -> SotwStreamState:
    st = SotwStreamState(ads=True)
    st.set_snapshot(snapshot)
    for t, names in ((C, []), (E, sorted(MESH[E])), (L, []), (R, ["r"])):
        names = decoded_names(names)
        (s,) = sends(st.handle_request(sreq(t, names)))
        st.handle_request(sreq(t, names, version=s.version, nonce=s.nonce))
    return st


def test_sotw_streams_share_subscriptions_and_views_instead_of_copies() -> None:
    snapshot = snap(MESH)
    a, b = synced_sotw(snapshot), synced_sotw(snapshot)
    # names decoded from two streams' requests end up as ONE shared set, and one string object per name
    assert a.types[E].names is b.types[E].names
    assert a.types[E].names == set(MESH[E])
    # the EDS view (named) is shared; the CDS view (wildcard) is the snapshot's own mapping
    assert a.types[E].sent_view is b.types[E].sent_view
    cds_a, cds_b = a.types[C].sent_view, b.types[C].sent_view
    assert cds_a is not None and cds_b is not None
    assert cds_a.by_name is snapshot.of(C) and cds_b.by_name is snapshot.of(C)


def test_shared_view_is_not_reused_for_other_bodies_under_the_same_version() -> None:
    """Two snapshots whose EDS type version is equal but whose bodies differ (explicit versions) must each
    get their own resources: a cached view is checked against the snapshot before reuse."""
    one = Snapshot.build([Resource(E, "x", b"\x0a\x01x-one", "v1")])
    two = Snapshot.build([Resource(E, "x", b"\x0a\x01x-two", "v1")])
    assert one.version(E) == two.version(E)
    bodies = []
    for snapshot in (one, two):
        st = SotwStreamState(ads=True)
        st.set_snapshot(snapshot)
        (s,) = sends(st.handle_request(sreq(E, ["x"])))
        bodies.append(decode_sotw_response(s.payload).resources[0].body)
    assert bodies == [b"\x0a\x01x-one", b"\x0a\x01x-two"]


def test_named_view_reports_missing_names_and_empty_cla_per_snapshot() -> None:
    st = SotwStreamState(ads=True)
    st.set_snapshot(snap({E: {"a": "ea"}, R: {"r": "r1"}}))
    (eds,) = sends(st.handle_request(sreq(E, ["a", "ghost"])))
    assert sorted(sotw_names(eds)) == ["a", "ghost"]  # the missing cluster gets an empty CLA
    assert sends(st.handle_request(sreq(R, ["r", "nope"])))
    assert st.types[R].missing == {"nope"}


def test_cached_piece_encoding_is_byte_identical_and_released_with_the_resource() -> None:
    items = [res(R, f"r{i}", "x" * (i * 40)) for i in range(5)]
    first = encode_sotw_response("v1", R, "7", items)
    again = encode_sotw_response("v1", R, "8", items)
    decoded = decode_sotw_response(first)
    assert [r.body for r in decoded.resources] == [r.body for r in items]
    assert decoded.nonce == "7" and decode_sotw_response(again).nonce == "8"
    assert first[:-1] == again[:-1]  # only the nonce differs
    held = len(codec.sotw_pieces)
    del items, decoded
    gc.collect()
    assert len(codec.sotw_pieces) <= held - 5  # entries of freed resources are dropped


def test_delta_responses_from_cached_pieces_decode_to_the_resources() -> None:
    snapshot = snap(MESH)
    streams = [DeltaStreamState(ads=True) for _ in range(2)]
    payloads = []
    for st in streams:
        st.set_snapshot(snapshot)
        (s,) = sends(st.handle_request(dreq(E, sub=decoded_names(sorted(MESH[E])))))
        payloads.append(s.payload)
    decoded = decode_delta_response(payloads[0])
    assert {r.name: r.version for r in decoded.resources} == {n: r.version for n, r in snapshot.of(E).items()}
    assert payloads[0] == payloads[1]  # same nonce sequence, same pieces
    # subscription names are interned: one string object per name across streams
    a, b = (next(n for n in st.types[E].names if n == "c7") for st in streams)
    assert a is b
