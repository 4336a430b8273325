"""with_key (the state service's prefixing of a request's key, issue #17: cheaper than dataclasses.replace)
keeps every other field: a field added to a request later and not copied there fails here."""

from __future__ import annotations

import dataclasses

from capabilities.blocks.state.contract import DeleteRequest, SetRequest, with_key


def test_with_key_copies_every_field_of_both_requests() -> None:
    set_req = SetRequest("k", b"v", etag="3", first_write=True, ttl_seconds=9, metadata={"a": "b"})
    delete_req = DeleteRequest("k", etag="4", first_write=True, metadata={"c": "d"})
    for req in (set_req, delete_req):
        moved = with_key(req, "app||k")
        assert moved == dataclasses.replace(req, key="app||k")
        assert type(moved) is type(req)
        for f in dataclasses.fields(req):  # each field set to a non-default value above
            if f.name != "key":
                assert getattr(req, f.name) != (f.default if f.default is not dataclasses.MISSING else {}), (
                    f.name
                )
