"""The upb fast path of decode_sotw_request decodes exactly what the field-by-field decoder does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xds.server.codec import (
    CodecError,
    ErrorDetail,
    SotwRequest,
    _decode_sotw_request,
    decode_sotw_request,
    encode_sotw_request,
)

TEXT = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    version=TEXT,
    node=st.none() | st.binary(max_size=20),
    names=st.lists(TEXT, max_size=8),
    type_url=TEXT,
    nonce=TEXT,
    error=st.none() | st.builds(ErrorDetail, st.integers(-(2**31), 2**31 - 1), TEXT),
)
def test_well_formed_requests_decode_the_same(
    version: str, node: bytes | None, names: list[str], type_url: str, nonce: str, error: ErrorDetail | None
) -> None:
    raw = encode_sotw_request(SotwRequest(version, node, names, type_url, nonce, error))
    assert decode_sotw_request(raw) == _decode_sotw_request(raw)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=60))
def test_garbage_gets_the_same_answer(raw: bytes) -> None:
    try:
        expected = _decode_sotw_request(raw)
    except CodecError as exc:
        with pytest.raises(CodecError, match="DiscoveryRequest"):
            decode_sotw_request(raw)
        assert str(exc)
        return
    assert decode_sotw_request(raw) == expected
