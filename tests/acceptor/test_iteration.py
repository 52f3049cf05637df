"""What the worker sends when the client starts an iteration (acceptor/_iteration.py)."""

from __future__ import annotations

import itertools

import numpy
import pytest

from tether.acceptor import _iteration as iteration
from tether.acceptor._iteration import PREFETCH_MAX, ROWS_BYTES


def test_fixed_items_come_all_at_once() -> None:
    _it, left, items = iteration.start((1, "a", None), with_rows=True)
    assert (left, items) == (0, [1, "a", None])
    assert iteration.start(range(3), with_rows=False)[1:] == (0, [0, 1, 2])


def test_a_list_goes_item_by_item_with_its_length() -> None:
    it, left, items = iteration.start([1, 2, 3], with_rows=True)
    assert (left, items) == (3, None) and next(it) == 1  # (the body may change a list)


def test_an_array_is_a_checked_snapshot_with_its_rows_values_when_small() -> None:
    grid = numpy.arange(6.0).reshape(3, 2)
    _it, size, rows, checked, copied = iteration.start(grid, with_rows=True)
    assert size == 3 and checked and [r.tolist() for r in rows] == grid.tolist()
    assert copied is not None  # the array's values, for the rows' reads
    assert iteration.start(grid, with_rows=False)[4] is None  # a client without numpy
    assert iteration.start(numpy.arange(3), with_rows=True)[4] is None  # items are numbers
    big = numpy.zeros((ROWS_BYTES // 8 + 1, 1))
    assert iteration.start(big, with_rows=True)[4] is None


def test_a_modules_parameters_and_buffers_come_all_at_once() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    _it, left, items = iteration.start(model.parameters(), with_rows=True)
    assert left == 0 and [tuple(p.shape) for p in items] == [(3, 2), (3,), (3,), (3,)]
    _it, left, named = iteration.start(model.named_buffers(), with_rows=True)
    assert left == 0 and [n for n, _ in named] == [
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    # The module tree may change under named_modules(): item by item.
    assert iteration.start(model.named_modules(), with_rows=True)[1:] == (None, None)


def test_a_plain_generator_goes_item_by_item() -> None:
    it, left, items = iteration.start((x for x in range(3)), with_rows=True)
    assert (left, items) == (None, None) and list(it) == [0, 1, 2]


def test_a_long_parameter_walk_keeps_every_item_in_order() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.ModuleList(torch.nn.Linear(1, 1, bias=False) for _ in range(PREFETCH_MAX + 2))
    it, left, items = iteration.start(model.parameters(), with_rows=True)
    assert (left, items) == (None, None)
    assert [id(p) for p in it] == [id(m.weight) for m in model]  # none lost to the peek
    assert list(itertools.islice(it, 1)) == []
