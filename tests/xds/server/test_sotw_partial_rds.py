"""SotW RDS (R2): once the proxy ACKed, a change sends only the route configurations that changed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xds import types
from xds.cache.snapshot import Resource, Snapshot
from xds.server.codec import SotwRequest
from xds.server.sotw import SotwStreamState, _build_view, _updated_view, shared_names
from xds.server.state import Send


def _snap(**versions: str) -> Snapshot:
    return Snapshot.build([Resource(types.ROUTE, n, n.encode() + v.encode(), v) for n, v in versions.items()])


def _request(names: list[str], nonce: str = "", version: str = "", error: bool = False) -> SotwRequest:
    from xds.server.codec import ErrorDetail

    return SotwRequest(
        version_info=version,
        node=None,
        resource_names=names,
        type_url=types.ROUTE,
        response_nonce=nonce,
        error_detail=ErrorDetail(13, "bad route") if error else None,
    )


def _send(actions: list[object]) -> Send:
    sends = [a for a in actions if isinstance(a, Send)]
    assert len(sends) == 1, actions
    return sends[0]


def test_only_changed_route_configurations_after_an_ack() -> None:
    state = SotwStreamState(ads=True)
    state.set_snapshot(_snap(a="1", b="1", c="1"))
    first = _send(state.handle_request(_request(["a", "b", "c"])))
    assert first.resource_count == 3
    state.handle_request(_request(["a", "b", "c"], first.nonce, first.version))
    second = _send(state.set_snapshot(_snap(a="1", b="2", c="1")))
    assert second.resource_count == 1 and b"b2" in second.payload and b"a1" not in second.payload


def test_full_response_while_one_is_unacked_or_after_a_nack_or_new_names() -> None:
    state = SotwStreamState(ads=True)
    state.set_snapshot(_snap(a="1", b="1"))
    first = _send(state.handle_request(_request(["a", "b"])))
    # not ACKed yet: the next change is sent in full
    second = _send(state.set_snapshot(_snap(a="2", b="1")))
    assert second.resource_count == 2
    state.handle_request(_request(["a", "b"], second.nonce, "", error=True))  # NACK
    third = _send(state.set_snapshot(_snap(a="3", b="1")))
    assert third.resource_count == 2  # the rejected response's other resources travel again
    state.handle_request(_request(["a", "b"], third.nonce, third.version))
    assert not [a for a in state.set_snapshot(_snap(a="3", b="1", c="1")) if isinstance(a, Send)]
    # a new name: the response names everything requested
    fourth = _send(state.handle_request(_request(["a", "b", "c"], third.nonce, third.version)))
    assert first.resource_count == 2 and fourth.resource_count == 3


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=7, unique=True),
    snaps=st.lists(
        st.dictionaries(st.sampled_from("abcdefg"), st.sampled_from("123")), min_size=2, max_size=5
    ),
)
def test_updated_views_equal_views_built_from_scratch(names: list[str], snaps: list[dict[str, str]]) -> None:
    wanted = shared_names(names)
    view = _build_view(types.ROUTE, False, wanted, _snap(**snaps[0]).of(types.ROUTE))
    for versions in snaps[1:]:
        present = _snap(**versions).of(types.ROUTE)
        view = _updated_view(view, present)
        fresh = _build_view(types.ROUTE, False, wanted, present)
        assert list(view.resources) == list(fresh.resources)
        assert dict(view.by_name) == dict(fresh.by_name) and view.missing == fresh.missing
