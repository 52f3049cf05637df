"""The worker's half of the client's array copies (acceptor/_snapshot.py): memory keys,
arrays built under a key the client named, and the names the client asks for."""

from __future__ import annotations

import gc

import numpy
import pytest

from tether.acceptor import _snapshot
from tether.acceptor._snapshot import (
    build,
    counts_exactly,
    default_int,
    exact_for,
    memory_root,
    numpy_name,
    reduce_or_copy,
)


def test_a_built_array_and_its_views_live_in_the_memory_the_client_named() -> None:
    a = build("zeros", -7, (3, 4))
    assert memory_root(a) == -7
    assert memory_root(a[1:]) == -7 and memory_root(a.T[0]) == -7
    assert memory_root(a.copy()) not in (-7, None)  # new memory: the worker's own key


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("array", ([1, 2],), [1, 2]),
        ("asarray", ((1.5, 2),), [1.5, 2.0]),
        ("ones", (2,), [1.0, 1.0]),
        ("arange", (5, 0, -2), [5, 3, 1]),
        ("zeros_like", (numpy.array([3, 4]),), [0, 0]),
        ("copy", (numpy.array([3.0]),), [3.0]),
        ("ndarray.copy", (numpy.array([[1, 2]]).T,), [[1], [2]]),
    ],
)
def test_build_makes_what_numpy_makes(
    name: str, args: tuple[object, ...], expected: object
) -> None:
    built = build(name, -1, *args)
    assert type(built) is numpy.ndarray and built.tolist() == expected
    if name == "ndarray.copy":
        assert built.flags.c_contiguous  # ndarray.copy, not numpy.copy's order K


def test_build_makes_only_the_constructors() -> None:
    with pytest.raises(ValueError, match="not 'load'"):
        build("load", -1, "/etc/passwd")


def test_a_key_dies_with_its_array() -> None:
    a = build("array", -3, [1.0])
    aid = id(a)
    assert aid in _snapshot._NAMED
    del a
    gc.collect()
    assert aid not in _snapshot._NAMED
    # A new array that happens to get the old one's address is not in that memory.
    b = numpy.array([2.0])
    assert memory_root(b) == id(b)


def test_the_names_the_client_asks_for() -> None:
    assert numpy_name(numpy.max) == "max"
    assert numpy_name(numpy.array) == "array"
    assert numpy_name(numpy.zeros_like) == "zeros_like"
    assert numpy_name(numpy.sum) == "sum"  # (made by the client on 64-bit ints only)
    assert numpy_name(numpy.mean) == "mean"  # (on booleans and small ints only)
    assert numpy_name(numpy.median) is None
    assert numpy_name(len) is None
    assert default_int() == numpy.array([0]).dtype.str


def test_the_worker_sends_a_copy_only_where_the_client_reduces_exactly() -> None:
    ints, floats = numpy.arange(4), numpy.linspace(0.0, 1.0, 4)
    copied, blob = reduce_or_copy("sum", ints, 1 << 10)
    assert copied and blob[1] == memory_root(ints)
    assert reduce_or_copy("sum", floats, 1 << 10) == (False, floats.sum())
    assert reduce_or_copy("max", floats, 1 << 10)[0]
    assert reduce_or_copy("max", floats, 8) == (False, 1.0)  # over the limit: answered
    assert not exact_for("prod", numpy.arange(3, dtype=numpy.int32))


def test_a_mean_is_copied_for_only_where_its_float_sum_is_exact() -> None:
    flags = numpy.arange(10) % 3 == 0
    assert reduce_or_copy("mean", flags, 1 << 10)[0]  # booleans: counts
    assert reduce_or_copy("mean", numpy.arange(100), 1 << 10)[0]
    floats = numpy.linspace(0.0, 1.0, 7)
    assert reduce_or_copy("mean", floats, 1 << 10) == (False, floats.mean())
    huge = numpy.array([1 << 62, 3], dtype=numpy.int64)  # its float64 sum rounds
    assert reduce_or_copy("mean", huge, 1 << 10) == (False, huge.mean())
    assert not counts_exactly(numpy.zeros(0, dtype=numpy.int64))


def test_functions_that_write_into_their_first_argument_are_named() -> None:
    for fn in (numpy.copyto, numpy.put, numpy.place, numpy.putmask, numpy.fill_diagonal):
        assert _snapshot.pure_kind(fn) == "writes"
    assert _snapshot.pure_kind(numpy.add.at) == "writes"
    assert _snapshot.pure_kind(numpy.add) == "ufunc"  # (with out=, the client sees the out)
    assert _snapshot.pure_kind(numpy.add.reduce) is None


def test_a_call_writing_into_copies_says_what_they_hold_after_it() -> None:
    X = numpy.zeros(4)
    result, written = _snapshot.call_writing(numpy.put, (X, [1, 2], [5.0, 6.0]), {}, [("a", 0)])
    assert result is None
    ((dtype, shape, raw),) = written
    assert numpy.frombuffer(raw, dtype=dtype).reshape(shape).tolist() == [0.0, 5.0, 6.0, 0.0]


def test_an_out_numpy_returns_is_named_so_the_client_returns_its_own() -> None:
    out = numpy.zeros(3)
    result, written = _snapshot.call_writing(
        numpy.add, (numpy.ones(3), 2), {"out": out}, [("o", -1)]
    )
    assert result == "out" and written[0][1] == (3,)
    q, r = numpy.zeros(2), numpy.zeros(2)
    result, written = _snapshot.call_writing(
        numpy.divmod, (numpy.array([7.0, 9.0]), 4), {"out": (q, r)}, [("o", 1)]
    )
    assert result == "out"
    assert numpy.frombuffer(written[0][2]).tolist() == [3.0, 1.0]  # only the item asked for
    result, _ = _snapshot.call_writing(numpy.sum, (numpy.ones(3),), {"out": numpy.zeros(())}, [])
    assert result == "out"
