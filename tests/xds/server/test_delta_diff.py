"""The named-subscription fast path of the delta diff gives exactly what the general diff gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xds import types
from xds.cache.snapshot import Resource
from xds.server.delta import DeltaStreamState, DeltaTypeState

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
