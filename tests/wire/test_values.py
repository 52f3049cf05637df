"""Plain answers in their compact form (wire/_values.py): exact both ways, and a
decoder that only ever raises ProtocolError on what it cannot read."""

from __future__ import annotations

import contextlib
import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether._errors import ProtocolError
from tether.wire._values import MAX_STR, VALUE_TAG, decode, encode

_compact = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=64),
)


@settings(max_examples=500)
@given(_compact)
def test_a_plain_value_comes_back_as_itself(value: object) -> None:
    meta = encode(value)
    assert meta is not None and meta[:1] == VALUE_TAG
    back = decode(meta)
    assert type(back) is type(value)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)  # type: ignore[arg-type]
    else:
        assert back == value
    assert pickle.dumps(value)[:1] != VALUE_TAG  # a pickle is never read as one


def test_what_it_does_not_carry_is_pickled() -> None:
    class Flagged(int):
        pass

    for value in (1 << 63, -(1 << 63) - 1, Flagged(3), "x" * (MAX_STR + 1), b"raw", (1, 2), [1]):
        assert encode(value) is None
    assert encode("x" * MAX_STR) is not None
    assert decode(encode("\udcff surrogate") or b"") == "\udcff surrogate"
    assert decode(encode(-0.0) or b"") == 0.0 and math.copysign(1, decode(encode(-0.0) or b"")) < 0


@settings(max_examples=500)
@given(st.binary(max_size=24))
def test_the_decoder_raises_only_protocol_errors(tail: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(VALUE_TAG + tail)


@pytest.mark.parametrize(
    "meta", [VALUE_TAG, VALUE_TAG + b"d", VALUE_TAG + b"i" + b"\0" * 7, VALUE_TAG + b"T\0",
             VALUE_TAG + b"s\xff", VALUE_TAG + b"?"]
)  # fmt: skip
def test_malformed_answers_are_refused(meta: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(meta)
