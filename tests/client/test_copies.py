"""The table of array copies (client/_copies.py): what it keeps and when a copy is good."""

from __future__ import annotations

import numpy

from tether.client._copies import KEEP, KNOWN_MAX, CopyTable


class Clock:
    """The session's epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_a_copy_is_good_until_the_epoch_moves() -> None:
    clock = Clock()
    table = CopyTable(clock)
    table.put(1, numpy.arange(3), 7)
    assert table.valid(1) is not None and table.known[1] == ("i", 7)
    clock.now += 1
    assert table.valid(1) is None and 1 not in table.copies
    assert table.known[1] == ("i", 7)  # what a copy told outlives it


def test_the_oldest_copies_go_first_and_dropped_proxies_before_them() -> None:
    table = CopyTable(Clock())
    released: list[int] = []
    forget = table.forgetting(released.append)
    for hid in range(KEEP):
        table.put(hid, numpy.zeros(2), None)
    forget(5)  # its proxy died: noted, not deleted under a walk
    assert 5 in table.copies and released == [5]
    table.put(100, numpy.zeros(2), None)
    assert 5 not in table.copies and 0 in table.copies  # the dropped one made room
    table.put(101, numpy.zeros(2), None)
    assert 0 not in table.copies and len(table.copies) == KEEP


def test_a_write_keeps_the_copies_of_other_memory_and_one_that_took_it() -> None:
    clock = Clock()
    table = CopyTable(clock)
    table.put(1, numpy.zeros(2), 10)  # written
    table.put(2, numpy.zeros(2), 10)  # a view of the same memory
    table.put(3, numpy.zeros(2), 11)  # other memory
    table.put(4, numpy.zeros(2), None)  # memory not known: never exempt
    clock.now = 1
    table.wrote(10, 0, 1, 1, lambda array: True)
    assert sorted(table.copies) == [1, 3]
    clock.now = 2
    table.wrote(11, 1, 2, 3, lambda array: False)  # the copy could not take the write
    assert sorted(table.copies) == [1]


def test_what_is_known_is_forgotten_all_at_once_past_its_bound() -> None:
    table = CopyTable(Clock())
    for hid in range(KNOWN_MAX):
        table.known[hid] = ("f", None)
    table.put(KNOWN_MAX, numpy.zeros(1), None)
    assert list(table.known) == [KNOWN_MAX]
