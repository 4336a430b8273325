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


BIG = {
    C: {f"c{i}": f"cluster {i}" for i in range(2000)},
    E: {f"c{i}": f"endpoints {i}" for i in range(2000)},
    L: {"l": "listener"},
    R: {"r": "route"},
}


def synced_delta(snapshot: Snapshot, mesh: dict[str, dict[str, str]]) -> DeltaStreamState:
    """A delta ADS stream as Envoy drives it: wildcard CDS/LDS, EDS and RDS by name, every response ACKed."""
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snapshot)
    for t, names in ((C, []), (E, sorted(mesh[E])), (L, []), (R, ["r"])):
        for s in sends(st.handle_request(dreq(t, decoded_names(names)))):
            st.handle_request(dreq(s.type_url, nonce=s.nonce))
    assert all(ts.state == "SYNCED" for ts in st.type_status()), st.type_status()
    return st


def test_delta_streams_share_subscriptions_and_what_they_hold() -> None:
    """What a delta stream knows the proxy holds (name -> version) and the names it subscribed refer to the
    snapshot's shared mapping and one shared name set: two proxies with the same view share the same objects
    (at 1,000 proxies, per-stream copies were 675 KB a stream)."""
    snapshot = snap(BIG)
    a, b = synced_delta(snapshot, BIG), synced_delta(snapshot, BIG)
    assert a.types[E].names is b.types[E].names
    for t in (C, E):
        held_a, held_b = a.types[t].client, b.types[t].client
        assert dict(held_a) == {n: r.version for n, r in snapshot.of(t).items()}
        assert held_a.base is snapshot.of(t) and held_b.base is snapshot.of(t)  # type: ignore[attr-defined]
        assert not held_a.own and not held_b.own  # type: ignore[attr-defined]
    # names decoded from two requests end up as one string object each
    name_a = next(n for n in a.types[E].names if n == "c7")
    name_b = next(n for n in b.types[E].names if n == "c7")
    assert name_a is name_b


def test_a_synced_delta_stream_keeps_little_of_its_own() -> None:
    """Memory per synced stream does not grow with the mesh: 2,000 clusters + 2,000 CLAs held by 20 streams
    cost each stream a few KB (the per-stream dicts and sets of every name were ~300 KB here)."""
    import tracemalloc

    snapshot = snap(BIG)
    synced_delta(snapshot, BIG)  # warm the shared caches (name set, encoded pieces)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    streams = [synced_delta(snapshot, BIG) for _ in range(20)]
    gc.collect()
    per_stream = (tracemalloc.get_traced_memory()[0] - before) / len(streams)
    tracemalloc.stop()
    assert per_stream < 30_000, f"{per_stream / 1000:.0f} KB per synced stream"


def test_delta_held_versions_follow_a_push_and_a_nack() -> None:
    """After a change the stream's held versions are the new snapshot's (sent only what changed); a NACKed
    response reverts them to what the proxy kept, and the next good snapshot is sent again."""
    snapshot = snap(BIG)
    st = synced_delta(snapshot, BIG)
    changed = {**BIG, C: {**BIG[C], "c1": "cluster one", "c2001": "new"}}
    second = snap(changed)
    out = sends(st.set_snapshot(second))
    cds = [s for s in out if s.type_url == C]
    assert [s.resource_count for s in cds] == [2]
    st.handle_request(dreq(C, nonce=cds[0].nonce, error="bad cluster"))
    assert st.types[C].client["c1"] == snapshot.of(C)["c1"].version
    assert "c2001" not in st.types[C].client
    third = snap({**changed, C: {**changed[C], "c3": "cluster three"}})
    (again,) = [s for s in sends(st.set_snapshot(third)) if s.type_url == C]
    assert again.resource_count == 3  # c1, c2001 (reverted by the NACK) and c3
    st.handle_request(dreq(C, nonce=again.nonce))
    assert dict(st.types[C].client) == {n: r.version for n, r in third.of(C).items()}


def test_first_responses_of_streams_with_the_same_view_are_one_encoding() -> None:
    """New proxies with the same view get the same first CDS/EDS response but for the nonce: it is computed
    and encoded once (the body bytes are one object), and every copy decodes to the snapshot's resources."""
    from xds.server import delta as delta_module

    snapshot = snap(BIG)
    streams = [DeltaStreamState(ads=True) for _ in range(3)]
    payloads = []
    for st in streams:
        st.set_snapshot(snapshot)
        (s,) = sends(st.handle_request(dreq(C)))
        payloads.append(s.payload)
    decoded = [decode_delta_response(p) for p in payloads]
    assert len({d.nonce for d in decoded}) == 1  # each stream's own counter: "1"
    for d in decoded:
        assert sorted(r.name for r in d.resources) == sorted(BIG[C])
        assert {r.name: r.version for r in d.resources} == {n: r.version for n, r in snapshot.of(C).items()}
    shared = [a for a in delta_module._FIRST_ANSWERS.values() if a.present is snapshot.of(C)]
    assert len(shared) == 1 and shared[0].uses == 3
    body = shared[0].body
    assert body and payloads[1].startswith(body) and payloads[2].startswith(body)


def test_nacked_first_response_leaves_the_stream_holding_nothing() -> None:
    """A proxy that refuses its first CDS response holds none of it: the next snapshot sends all again."""
    snapshot = snap(BIG)
    st = DeltaStreamState(ads=True)
    st.set_snapshot(snapshot)
    (s,) = sends(st.handle_request(dreq(C)))
    st.handle_request(dreq(C, nonce=s.nonce, error="refused"))
    assert len(st.types[C].client) == 0
    second = snap({**BIG, C: {**BIG[C], "c1": "changed"}})
    (again,) = [x for x in sends(st.set_snapshot(second)) if x.type_url == C]
    assert again.resource_count == len(BIG[C])
