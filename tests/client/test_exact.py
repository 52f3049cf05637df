"""What the client lets its own numpy make (client/_exact.py): the rules, case by case.

These are pure: a worker's default int is given as a function, as the session gives it
(the end-to-end proof that the copies hold the worker's values is
tests/client/test_replica.py and tests/scripts/numpy_grid_world.py)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.client._draws import MISS
from tether.client._exact import MAX_ITEMS, Exact

EXACT = Exact(numpy)
HERE = numpy.array([0]).dtype.str


def same_int() -> str:
    return HERE


def other_int() -> str:
    return "<i4" if HERE != "<i4" else "<i8"


def never() -> str:
    raise AssertionError("the worker was asked, for an array that needs no asking")


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("array", ([1, 2],), [1, 2]),
        ("array", ([[1.5], [2]],), [[1.5], [2.0]]),
        ("asarray", ((True, False),), [True, False]),
        ("zeros", ((2, 3),), [[0.0] * 3] * 2),
        ("ones", (2,), [1.0, 1.0]),
        ("arange", (2, 9, 3), [2, 5, 8]),
        ("arange", (0,), []),
    ],
)
def test_plain_data_is_built_here(name: str, args: tuple[object, ...], expected: object) -> None:
    built = EXACT.build(name, args, same_int)
    assert built.tolist() == expected and not built.flags.writeable


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("array", ([[1], [1, 2]],)),  # ragged: the worker's numpy says how it fails
        ("array", (5,)),  # not a list
        ("array", ([1], [2])),  # a second argument (a dtype, as numpy reads it)
        ("zeros", ((2, -1),)),
        ("zeros", ((1 << 40,),)),  # too large to hold here
        ("zeros", ((2.0, 3),)),
        ("arange", (0, 10, 0)),
        ("arange", (1.5,)),
        ("arange", (0, 1 << 40)),
        ("full", ((2,), 1.0)),  # not one of the constructors
    ],
)
def test_what_the_worker_must_build_itself(name: str, args: tuple[object, ...]) -> None:
    assert EXACT.build(name, args, never) is None


def test_int_arrays_only_when_both_default_ints_agree() -> None:
    assert EXACT.build("array", ([1, 2],), same_int) is not None
    assert EXACT.build("array", ([1, 2],), other_int) is None
    assert EXACT.build("arange", (3,), other_int) is None
    assert EXACT.build("array", ([1.0, 2],), never) is not None  # floats: never asked
    assert EXACT.reduce("argmax", ([3, 9],), other_int) is MISS
    assert EXACT.reduce("max", ([3.0, 9.0],), never) == 9.0


def test_plain_means_numbers_in_int64_within_a_budget() -> None:
    assert EXACT.plain((1, 2.5, True, numpy.float64(1), [1, (2, 3)], ()))
    assert not EXACT.plain((1 << 63,))
    assert EXACT.plain(("a", ["b", "cd"]))  # numpy makes strings <U of the longest
    assert not EXACT.plain((numpy.float32(1),))
    assert not EXACT.plain(([None],))
    assert EXACT.plain(([0] * MAX_ITEMS,))
    assert not EXACT.plain(([0] * MAX_ITEMS, [0]))


def test_bool_arrays_and_big_ints_are_no_operands() -> None:
    assert not EXACT.array_operand(numpy.array([True]))  # numpy 1: True + 1 by the value
    assert not EXACT.array_operand(numpy.array([1], dtype=numpy.int32))
    assert not EXACT.array_operand(numpy.array([1.0], dtype=numpy.float32))
    assert EXACT.array_operand(numpy.array([1])) and EXACT.array_operand(numpy.zeros(1))
    assert not EXACT.operand(1 << 63) and EXACT.operand(-(1 << 63)) and EXACT.operand(True)
    assert not EXACT.operand(numpy.int32(1))


@given(
    st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=5),
    st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.floats(allow_nan=True)),
    st.sampled_from([operator.add, operator.sub, operator.mul, operator.truediv, operator.lt]),
)
def test_int64_arithmetic_is_numpys_own(
    values: list[int], other: float, fn: Callable[[Any, Any], Any]
) -> None:
    array = numpy.array(values, dtype=numpy.int64)
    made = EXACT.operate(fn, [array, other])
    with numpy.errstate(all="ignore"):
        expected = fn(array, other)
    assert made is not None and not made.flags.writeable
    assert made.dtype == expected.dtype
    numpy.testing.assert_array_equal(made, expected)


def test_a_failing_operation_is_left_to_the_worker() -> None:
    assert EXACT.operate(operator.add, [numpy.zeros(2), numpy.zeros(3)]) is None


@pytest.mark.parametrize(
    ("array", "index", "value", "applied"),
    [
        (numpy.zeros((2, 2)), (1, 0), 2.5, True),
        (numpy.zeros(3), numpy.int64(-1), numpy.float64(4.0), True),
        (numpy.zeros(3), 3, 1.0, False),  # out of range: the worker raises
        (numpy.zeros(3), 1, 1, False),  # an int into floats: left to the worker
        (numpy.zeros((2, 2)), 1, 1.0, False),  # a row, not an element
        (numpy.array([True, False]), 1, True, True),
        (numpy.array([1, 2]), 0, 5.0, False),  # ints: never written here
    ],
)
def test_write_through(array: object, index: Any, value: object, applied: bool) -> None:
    local = numpy.array(array)
    local.flags.writeable = False
    assert EXACT.write_through(local, index, value) is applied
    assert not local.flags.writeable
    if applied:
        assert local[index] == value


def test_sums_and_products_only_of_64_bit_ints() -> None:
    assert EXACT.reducible("sum", numpy.arange(3)) and EXACT.reducible("prod", numpy.arange(3))
    assert EXACT.reducible("sum", numpy.arange(3, dtype=numpy.uint64))
    assert not EXACT.reducible("sum", numpy.ones(3))  # a float sum's rounding varies
    assert not EXACT.reducible("sum", numpy.arange(3, dtype=numpy.int32))  # platform int
    assert not EXACT.reducible("sum", numpy.array([True]))
    assert EXACT.reducible("max", numpy.ones(3)) and EXACT.reducible("any", numpy.array([True]))
    assert EXACT.reduce("sum", ([1, 2],), same_int) == 3
    assert EXACT.reduce("sum", ([0.5, 2.0],), never) is MISS
    assert EXACT.reduce("prod", ([1 << 62, 4],), same_int) == 0  # wraps, as the worker's


def test_means_of_booleans_and_small_ints_only() -> None:
    flags = numpy.arange(7) % 2 == 0
    assert EXACT.reducible("mean", flags) and EXACT.reducible("mean", numpy.arange(50))
    assert not EXACT.reducible("mean", numpy.linspace(0.0, 1.0, 5))  # rounds by order
    assert not EXACT.reducible("mean", numpy.array([1 << 62, 1], dtype=numpy.int64))
    assert not EXACT.reducible("mean", numpy.zeros(0, dtype=numpy.int64))
    assert EXACT.reduce("mean", ([True, False, True],), never) == 2 / 3
    assert EXACT.reduce("mean", ([0.1, 0.2, 0.3],), never) is MISS


@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=200))
def test_a_mean_of_small_ints_is_their_exact_sum_divided_once(values: list[int]) -> None:
    array = numpy.array(values, dtype=numpy.int64)
    assert EXACT.reducible("mean", array)
    assert numpy.mean(array) == sum(values) / len(values)  # one rounding: the division


def test_what_a_choice_drew_is_taken_from_its_population() -> None:
    words = ["ab", "cde", "f"]
    taken = EXACT.build("take", (words, [2, 0, 2]), never)
    assert taken.tolist() == ["f", "ab", "f"] and taken.dtype == numpy.dtype("<U3")
    assert taken.dtype == numpy.random.RandomState(0).choice(words, 3).dtype
    assert EXACT.build("take", (words, [3]), never) is None  # out of range: the worker's
    assert EXACT.build("take", (words, [1.0]), never) is None
    assert EXACT.build("take", ([1.5, 2.5], [1]), never).tolist() == [2.5]
