"""Compact calls: round trips through the encoder and decoder, and the fuzz rule."""

from __future__ import annotations

import math
import operator
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire._compact import COMPACT_TAG, HEAD, HEADER, CompactEncoder, decode, peek_shape
from tether.wire._ops import DISCARD, NONE, Handle, Items, Op

HANDLES = {5: "tensor a", 9: "tensor b"}


class _ProxyMeta(type):
    """Stands for the client's proxy metaclass: its instances' instances are handles."""


class Proxy(metaclass=_ProxyMeta):
    def __init__(self, hid: int) -> None:
        self._t_id = hid


compact_call = CompactEncoder(_ProxyMeta).encode


def ref(hid: int) -> Any:
    return HANDLES[hid]


def test_proxies_travel_as_handles() -> None:
    meta = compact_call(Op.CALLMETHOD, NONE, (Proxy(5), "add_", (Proxy(9), 1.0), {}))
    assert meta is not None
    assert decode(meta, ref, name) == (
        Op.CALLMETHOD,
        NONE,
        ["tensor a", "add_", "tensor b", 1.0],
        None,
    )


def name(raw: bytes) -> Any:
    module, _, qualname = raw.decode().partition(":")
    return {"_operator": operator, "math": math}[module].__dict__[qualname]


def test_a_call_of_a_module_builtin_on_plain_values_round_trips() -> None:
    fields = (operator.mul, (2.5, -1, None, True, False, "é\ud800", b"\0x"), {"k": "v", "j": 3})
    meta = compact_call(Op.CALL, Handle(3, 7), fields)
    assert meta is not None and meta[:1] == COMPACT_TAG
    assert decode(meta, ref, name) == (
        Op.CALL,
        Handle(3, 7),
        [operator.mul, 2.5, -1, None, True, False, "é\ud800", b"\0x"],
        {"k": "v", "j": 3},
    )


@pytest.mark.parametrize("shape", [None, NONE, DISCARD, Handle(2**40, 12)])
def test_a_method_call_round_trips_with_each_result_shape(shape: Any) -> None:
    meta = compact_call(Op.CALLMETHOD, shape, ("x", "add_", (1.0,), {}))
    assert meta is not None
    assert decode(meta, ref, name) == (Op.CALLMETHOD, shape, ["x", "add_", 1.0], None)
    assert peek_shape(meta) == shape


@pytest.mark.parametrize(
    ("op", "shape", "fields", "compact"),
    [
        (Op.CALL, None, (operator.mul, ({1, 2},), {}), False),  # a set: pickle
        (Op.CALL, None, (operator.mul, ([1, 2.5, None],), {}), True),  # a flat list
        (Op.CALL, None, (operator.mul, (1,), {"k": {1: 2}}), False),  # a keyword not plain
        (Op.CALL, None, (operator.mul, ([1, [2]],), {}), False),  # a list in a list
        (Op.CALL, None, (operator.mul, ([1, (2,)],), {}), False),  # a tuple in a list
        (Op.CALL, None, (operator.mul, ((1, [2]),), {}), False),  # a list in a tuple
        (Op.CALL, None, (operator.getitem, ((1, (2,)),), {}), False),  # a tuple in a tuple
        (Op.CALL, None, (operator.getitem, (slice(1, slice(2)),), {}), False),  # nested slice
        (Op.CALL, None, (operator.getitem, (slice((1,)),), {}), False),  # a tuple in a slice
        (Op.CALL, None, (operator.getitem, ((slice(1, None), 0, ...),), {}), True),  # x[1:, 0, ...]
        (Op.CALL, None, (lambda x: x, (1,), {}), False),  # code: pickle (by value)
        (Op.CALL, None, ([].append, (1,), {}), False),  # a bound builtin is not module level
        (Op.CALL, None, (operator.mul, (2**63,), {}), False),  # past 64 bits
        (Op.CALL, None, (operator.mul, (1 + 2j,), {}), False),
        (Op.CALL, Items(False, (Handle(1, 2),)), (operator.mul, (1,), {}), False),  # nested shape
        (Op.CALL, None, (operator.mul, (-(2**63), 3.0), {}), True),
        (Op.CALL, None, (math.floor, (2.5,), {}), True),
        (Op.IMPORT, None, ("math",), False),  # no compact form
        (Op.PING, None, (), False),
    ],
)
def test_only_plain_calls_are_compact(
    op: Op, shape: Any, fields: tuple[Any, ...], compact: bool
) -> None:
    assert (compact_call(op, shape, fields) is not None) == compact


def _meta(op: int, n_items: int, body: bytes, kind: int = 0, n_kwargs: int = 0) -> bytes:
    return COMPACT_TAG + HEADER.pack(op, kind, 0, 0, n_items, n_kwargs) + body


@pytest.mark.parametrize(
    "meta",
    [
        COMPACT_TAG,  # no header
        _meta(int(Op.PING), 0, b""),  # no compact form
        _meta(int(Op.CALL), 0, b""),  # a call needs its function
        _meta(int(Op.CALL), 1, b"N", kind=9),  # an unknown shape
        _meta(int(Op.CALL), 1, b"N" + b"x"),  # trailing bytes
        _meta(int(Op.CALL), 2, b"N"),  # an item missing
        _meta(int(Op.CALL), 1, b"i\0\0"),  # a truncated int
        _meta(int(Op.CALL), 1, b"s" + struct.pack("<I", 2**31) + b"ab"),  # past the end
        _meta(int(Op.CALL), 1, b"s" + struct.pack("<I", 1) + b"\xff"),  # not UTF-8
        _meta(int(Op.CALL), 1, b"?"),  # an unknown tag
        _meta(int(Op.NEXT), 2, b"NN"),  # next takes one item
        _meta(int(Op.GETATTR), 2, b"NN", n_kwargs=1),  # getattr takes no keywords
        _meta(int(Op.CALL), 1, b"N" + struct.pack("<H", 9) + b"k", n_kwargs=1),
        _meta(int(Op.CALL), 1, b"SNN"),  # a slice with two parts
        _meta(int(Op.CALL), 1, b"SSNNNNN"),  # a slice in a slice
        _meta(int(Op.CALL), 1, b"t\x01t\x00"),  # a tuple in a tuple
        _meta(int(Op.CALL), 1, b"SNt\x00N"),  # a tuple in a slice
        _meta(int(Op.CALL), 1, b"t\x02N"),  # a tuple short of an item
        _meta(int(Op.CALL), 1, b"t"),  # a tuple without its count
        _meta(int(Op.CALL), 1, b"l\x01l\x00"),  # a list in a list
        _meta(int(Op.CALL), 1, b"t\x01l\x00"),  # a list in a tuple
        _meta(int(Op.CALL), 1, b"SNl\x00N"),  # a list in a slice
    ],
)
def test_malformed_compact_calls_are_protocol_errors(meta: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(meta, ref, name)
    assert peek_shape(meta) is None


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.just(...),
)
_slice = st.builds(slice, _scalar, _scalar, _scalar)
#: What indexing passes (``x[i:j]``, ``x[:, 0]``, ``x[..., :k]``) besides plain values.
_plain = st.one_of(
    _scalar,
    _slice,
    st.tuples(*[st.one_of(_scalar, _slice)] * 2),
    st.tuples(),
    st.lists(st.one_of(_scalar, _slice), max_size=4),
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=96), st.lists(_plain, min_size=1, max_size=6)), st.data())
def test_garbage_only_raises_protocol_error(seed: Any, data: st.DataObject) -> None:
    """Random bytes, and real calls with bytes flipped or cut: each decodes to a
    well-formed call or raises ProtocolError; nothing else escapes."""
    if isinstance(seed, bytes):
        meta = COMPACT_TAG + seed
    else:
        good = compact_call(Op.CALL, None, (operator.add, tuple(seed), {}))
        assert good is not None
        i = data.draw(st.integers(1, len(good) - 1))
        meta = good[:i] + data.draw(st.binary(max_size=4)) + good[i + 1 :]
    try:
        op, _, items, kwargs = decode(meta, lambda hid: hid, lambda raw: raw)
    except ProtocolError:
        pass
    else:
        assert op in HEAD and len(items) >= HEAD[op]
        assert kwargs is None or all(type(k) is str for k in kwargs)
    peek_shape(meta)


@given(st.lists(_plain, max_size=8), st.dictionaries(st.text(), _plain, max_size=4))
def test_any_plain_call_round_trips(args: list[Any], kwargs: dict[str, Any]) -> None:
    meta = compact_call(Op.CALL, None, (operator.add, tuple(args), kwargs))
    assert meta is not None
    assert decode(meta, ref, name) == (Op.CALL, None, [operator.add, *args], kwargs or None)


def _resolved(x: Any) -> Any:
    """``x`` as the worker gets it: each proxy its object."""
    if isinstance(x, Proxy):
        return HANDLES[x._t_id]
    if type(x) is slice:
        return slice(_resolved(x.start), _resolved(x.stop), _resolved(x.step))
    if type(x) is tuple:
        return tuple(_resolved(p) for p in x)
    return x


def test_indexing_with_remote_bounds_round_trips() -> None:
    """``data[i:i + 8]`` with ``i`` a remote scalar, and ``x[:, i]``: no pickle."""
    a, b = Proxy(5), Proxy(9)
    for key in (slice(a, b), (slice(None), a), (..., slice(None, b, 2)), slice(None)):
        meta = compact_call(Op.CALL, Handle(3, 4), (operator.getitem, (a, key), {}))
        assert meta is not None
        expected = [operator.getitem, "tensor a", _resolved(key)]
        assert decode(meta, ref, name) == (Op.CALL, Handle(3, 4), expected, None)


def test_a_list_of_handles_travels_whole_and_one_list_passed_twice_is_pickled() -> None:
    """``torch.stack([a, b])``: no pickle. ``f(xs, xs)``: pickle gives the worker one
    list for both, as the script has one; written whole it would get two."""
    a, b = Proxy(5), Proxy(9)
    meta = compact_call(Op.CALL, Handle(3, 4), (operator.add, ([a, b], [b]), {}))
    assert meta is not None
    _op, _shape, items, _kwargs = decode(meta, ref, name)
    assert items == [operator.add, ["tensor a", "tensor b"], ["tensor b"]]
    assert type(items[1]) is list
    xs = [a]
    assert compact_call(Op.CALL, None, (operator.add, (xs, xs), {})) is None
    assert compact_call(Op.CALL, None, (operator.add, (xs,), {"again": xs})) is None
