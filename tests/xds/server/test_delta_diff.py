"""The named-subscription fast path of the delta diff gives exactly what the general diff gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import DeltaRequest
from xds.server.delta import DeltaStreamState, DeltaTypeState
from xds.server.state import Send

NAMES = st.sampled_from([f"r{i}" for i in range(12)])
VERSIONS = st.sampled_from(["a", "b", "c"])


@settings(max_examples=300, deadline=None)
@given(
    names=st.sets(NAMES),
    client=st.dictionaries(NAMES, VERSIONS),
    told_missing=st.sets(NAMES),
    present=st.dictionaries(NAMES, VERSIONS),
)
def test_named_diff_equals_general_diff(
    names: set[str], client: dict[str, str], told_missing: set[str], present: dict[str, str]
) -> None:
    resources = {n: Resource(types.ROUTE, n, b"", v) for n, v in present.items()}
    state = DeltaStreamState(ads=True)

    def fresh() -> DeltaTypeState:
        return DeltaTypeState(names=set(names), client=dict(client), told_missing=set(told_missing))

    fast = state._diff_named(fresh(), resources)
    general = state._diff_general(types.ROUTE, fresh(), resources)
    assert ([r.name for r in fast[0]], fast[1]) == ([r.name for r in general[0]], general[1])


SNAPSHOT = st.dictionaries(NAMES, VERSIONS, max_size=8)


def _snapshot(routes: dict[str, str]) -> Snapshot:
    return Snapshot.build([Resource(types.ROUTE, n, n.encode(), v) for n, v in routes.items()])


def _sends(actions: list[object]) -> list[tuple[bytes, int, int]]:
    return [(a.payload, a.resource_count, a.removed_count) for a in actions if isinstance(a, Send)]


@settings(max_examples=200, deadline=None)
@given(
    subscribed=st.lists(NAMES, min_size=1, max_size=6),
    snapshots=st.lists(SNAPSHOT, min_size=1, max_size=6),
    ack_each=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_incremental_diff_sends_what_a_full_diff_sends(
    subscribed: list[str], snapshots: list[dict[str, str]], ack_each: list[bool]
) -> None:
    """Two streams see the same requests and snapshots; one always diffs in full."""
    fast, full = DeltaStreamState(ads=True), DeltaStreamState(ads=True)
    first = DeltaRequest(node=None, type_url=types.ROUTE, subscribe=subscribed)
    for state in (fast, full):
        state.set_snapshot(_snapshot(snapshots[0]))
    assert _sends(fast.handle_request(first)) == _sends(full.handle_request(first))
    for routes, ack in zip(snapshots[1:], ack_each, strict=False):
        snap = _snapshot(routes)
        full.types[types.ROUTE].evaluated_map = None  # the reference never takes the shortcut
        got, want = fast.set_snapshot(snap), full.set_snapshot(snap)
        assert _sends(got) == _sends(want)
        assert fast.types[types.ROUTE].client == full.types[types.ROUTE].client
        if ack:
            for state, actions in ((fast, got), (full, want)):
                for a in actions:
                    if isinstance(a, Send):
                        state.handle_request(
                            DeltaRequest(node=None, type_url=types.ROUTE, response_nonce=a.nonce)
                        )
