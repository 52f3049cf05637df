"""Lanes: the client's packers write what the encoder writes, and the worker's
reader reads what decode reads, for every call and every mangling of one."""

from __future__ import annotations

import math
import operator
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire._compact import SHAPE_ANY, SHAPE_HANDLE, SHAPE_NONE, CompactEncoder, decode
from tether.wire._lanes import LaneReader, packer
from tether.wire._ops import NONE, Handle, Op, frame_entry


class _ProxyMeta(type):
    """Stands for the client's proxy metaclass: its instances' instances are handles."""


class Proxy(metaclass=_ProxyMeta):
    def __init__(self, hid: int) -> None:
        self._t_id = hid


ENC = CompactEncoder(_ProxyMeta)
CALL, CALLMETHOD = int(Op.CALL), int(Op.CALLMETHOD)
FUNCTIONS = {
    "_operator:mul": operator.mul,
    "_operator:add": operator.add,
    "_operator:getitem": operator.getitem,
    "math:pow": math.pow,
}


def _name(raw: bytes) -> Any:
    return FUNCTIONS[bytes(raw).decode()]


def _lookup(hid: int) -> Any:
    return ("object", hid)


_ids = st.integers(-(2**63), 2**63 - 1)
_operand = st.one_of(_ids.map(Proxy), st.floats(allow_nan=False), _ids)
_kind = st.sampled_from([SHAPE_ANY, SHAPE_NONE, SHAPE_HANDLE])


def _shape(kind: int, hid: int, tid: int) -> Any:
    return Handle(hid, tid) if kind == SHAPE_HANDLE else (NONE if kind == SHAPE_NONE else None)


def _fields(op: int, items: tuple[Any, ...]) -> tuple[Any, ...]:
    if op == CALL:
        return (items[0], items[1:], {})
    return (items[0], items[1], items[2:], {})


def _general(meta: bytes) -> tuple[Any, ...]:
    """What the worker's general path makes of a compact call (Engine._compact)."""
    op, shape, items, kwargs = decode(meta, _lookup, _name)
    if op == CALL:
        return (op, shape, items[0], tuple(items[1:]), kwargs or {})
    if op == CALLMETHOD:
        return (op, shape, items[0], items[1], tuple(items[2:]), kwargs or {})
    return (op, shape, *items)  # (a mangled op byte: GETATTR or NEXT, never a lane's)


@st.composite
def _calls(draw: st.DrawFn) -> tuple[int, tuple[Any, ...], tuple[bool, ...]]:
    """A call with a fixed layout: an operator or a remote function, or a method."""
    args = tuple(draw(st.lists(_operand, max_size=4)))
    if draw(st.booleans()):
        fn = draw(st.sampled_from([operator.mul, math.pow, Proxy(77)]))
        return CALL, (fn, *args), (False, *(True,) * len(args))
    name = draw(st.sampled_from(["add_", "view", "step", "__getitem__", "é"]))
    return CALLMETHOD, (draw(_ids.map(Proxy)), name, *args), (True, False, *(True,) * len(args))


@given(st.lists(st.tuples(_calls(), _kind, _ids, _ids), min_size=1, max_size=8))
def test_a_packer_writes_the_encoders_bytes_and_the_reader_reads_them_as_decode(
    calls: list[tuple[tuple[int, tuple[Any, ...], tuple[bool, ...]], int, int, int]],
) -> None:
    reader = LaneReader(_name)
    for (op, items, variable), kind, hid, tid in calls:
        pack = packer(ENC, op, kind, tid, items, variable)
        assert pack is not None
        hid = hid if kind == SHAPE_HANDLE else 0
        meta = ENC.encode(
            op, _shape(kind, hid, tid if kind == SHAPE_HANDLE else 0), _fields(op, items)
        )
        assert meta is not None
        values = [x for x, varies in zip(items, variable, strict=True) if varies]
        assert pack(hid, *values) == frame_entry(meta)
        # Read twice: the layout learned from decode, then used.
        assert reader.read(meta, _lookup) == _general(meta)
        assert reader.read(meta, _lookup) == _general(meta)


def test_a_packer_refuses_an_int_past_64_bits() -> None:
    pack = packer(ENC, CALL, SHAPE_HANDLE, 7, (operator.mul, Proxy(1), 2), (False, True, True))
    assert pack is not None
    with pytest.raises(struct.error):
        pack(3, Proxy(1), 2**64)  # the session takes the general path for it


@pytest.mark.parametrize(
    "op, items, variable",
    [
        (CALL, (lambda x, y: x, Proxy(1), 1.0), (False, True, True)),  # no name to send
        (CALL, (operator.mul, Proxy(1), True), (False, True, True)),  # a bool: its own item
        (CALL, (operator.mul, Proxy(1), "s"), (False, True, True)),
        (CALL, (operator.mul, None, Proxy(1)), (False, True, True)),
        (CALLMETHOD, (Proxy(1), "f", 1.5), (True, False)),  # not one flag per item
        (int(Op.GETATTR), (Proxy(1), "f"), (True, False)),
    ],
)
def test_calls_without_a_fixed_layout_have_no_packer(
    op: int, items: tuple[Any, ...], variable: tuple[bool, ...]
) -> None:
    assert packer(ENC, op, SHAPE_HANDLE, 7, items, variable) is None


def test_calls_that_are_not_a_lanes_are_left_to_decode() -> None:
    reader = LaneReader(_name)
    for fields in [
        (operator.mul, (Proxy(1), "text"), {}),  # a str operand
        (operator.mul, (Proxy(1), 2.0), {"alpha": 2}),  # keywords
        (operator.mul, (Proxy(1), None), {}),
    ]:
        meta = ENC.encode(CALL, Handle(4, 5), fields)
        assert meta is not None
        assert reader.read(meta, _lookup) is None
        assert reader.read(meta, _lookup) is None
    getattr_meta = ENC.encode(int(Op.GETATTR), None, (Proxy(1), "shape"))
    assert getattr_meta is not None and reader.read(getattr_meta, _lookup) is None


def test_calls_that_are_not_a_lanes_leave_no_layout_behind() -> None:
    """``data[i:i + 8]`` with a new ``i`` each time: the handle ids in the slice are
    outside the operand holes, so a remembered "no lane" would key on them. (Ids
    under 0x66 here: a byte that reads as an operand's tag where one would stand
    makes the reader decode and remember the meta, at most 4,096 of them.)"""
    reader = LaneReader(_name)
    for hid in range(1, 100):
        key = slice(Proxy(hid), Proxy(hid + 1))
        meta = ENC.encode(CALL, Handle(hid, 5), (operator.getitem, (Proxy(9), key), {}))
        assert meta is not None and reader.read(meta, _lookup) is None
    assert len(reader._layouts) == 0


@settings(max_examples=400)
@given(_calls(), _kind, st.data())
def test_a_mangled_call_is_read_as_decode_reads_it_or_left_to_decode(
    call: tuple[int, tuple[Any, ...], tuple[bool, ...]], kind: int, data: st.DataObject
) -> None:
    op, items, _variable = call
    reader = LaneReader(_name)
    good = ENC.encode(op, _shape(kind, 11, 4 if kind == SHAPE_HANDLE else 0), _fields(op, items))
    assert good is not None
    reader.read(good, _lookup)  # its layout is known
    meta = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        meta[data.draw(st.integers(0, len(meta) - 1))] = data.draw(st.integers(0, 255))
    try:
        want: Any = _general(bytes(meta))
    except (ProtocolError, KeyError, UnicodeDecodeError):
        want = "unreadable"
    try:
        found = reader.read(bytes(meta), _lookup)
    except (ProtocolError, KeyError, UnicodeDecodeError):
        assert want == "unreadable"  # the reader fails only where decode fails
        return
    assert found is None or repr(found) == repr(want)  # (repr: a mangled float may be NaN)


def test_lookup_errors_propagate_as_from_decode() -> None:
    reader = LaneReader(_name)
    meta = ENC.encode(CALLMETHOD, Handle(5, 6), (Proxy(1), "add_", (Proxy(2),), {}))
    assert meta is not None
    reader.read(meta, _lookup)

    def released(hid: int) -> Any:
        raise LookupError(f"#{hid} released")

    with pytest.raises(LookupError, match="#1 released"):
        reader.read(meta, released)


def test_layouts_that_differ_only_in_a_later_operand_are_two_layouts() -> None:
    reader = LaneReader(_name)
    for args in [(Proxy(1), Proxy(2), 0.5), (Proxy(1), 0.5, Proxy(2)), (Proxy(1), 2, 0.5)]:
        meta = ENC.encode(CALL, None, (operator.mul, args, {}))
        assert meta is not None
        assert reader.read(meta, _lookup) == _general(meta)
