"""Result shapes: typed records in the program, plain tuples in a pickled call."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import ProtocolError
from tether.wire._ops import (
    DISCARD,
    EXHAUSTED,
    NONE,
    Handle,
    Items,
    Shape,
    shape_from_wire,
    shape_handles,
    shape_to_wire,
)

_shapes: st.SearchStrategy[Shape] = st.recursive(
    st.builds(Handle, st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**31)),
    lambda inner: st.builds(Items, st.booleans(), st.lists(inner, max_size=4).map(tuple)),
    max_leaves=16,
) | st.sampled_from([None, NONE, DISCARD])


@given(_shapes)
def test_shapes_round_trip_through_their_wire_form(shape: Shape) -> None:
    raw = shape_to_wire(shape)
    # The wire form is builtins only: the worker's unpickler imports nothing for it.
    assert b"tether" not in pickle.dumps(raw)
    assert shape_from_wire(pickle.loads(pickle.dumps(raw))) == shape


def test_the_wire_form_is_the_one_of_earlier_versions() -> None:
    shape = Items(False, (Handle(1, 2), Items(True, (Handle(3, 4),))))
    assert shape_to_wire(shape) == ("T", (("H", 1, 2), ("L", (("H", 3, 4),))))
    assert (shape_to_wire(NONE), shape_to_wire(DISCARD), shape_to_wire(None)) == ("N", "D", None)
    assert shape_handles(shape) == [1, 3]


@pytest.mark.parametrize(
    "raw",
    ["X", ("H", 1), ("H", "1", 2), ("L", [("H", 1, 2)]), ("T", (("Q",),)), 3, ("L",) * 40],
)
def test_malformed_shapes_are_protocol_errors(raw: Any) -> None:
    with pytest.raises(ProtocolError):
        shape_from_wire(raw)


def test_deeply_nested_shapes_are_refused() -> None:
    raw: Any = ("H", 1, 1)
    for _ in range(100):
        raw = ("L", (raw,))
    with pytest.raises(ProtocolError):
        shape_from_wire(raw)


def test_the_end_of_an_iteration_is_no_value_an_iterator_could_yield() -> None:
    assert EXHAUSTED != "__tether_stop__" and repr(EXHAUSTED) == "EXHAUSTED"
    assert pickle.loads(pickle.dumps(EXHAUSTED)) is EXHAUSTED
