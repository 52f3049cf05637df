"""Answers from the values of iterated tensor items (client/_itemvalues.py)."""

from __future__ import annotations

import math
import operator

from tether.client._draws import MISS
from tether.client._itemvalues import KEEP, ItemValues


def test_values_answer_at_their_epoch_only() -> None:
    values = ItemValues()
    assert not values
    values.note(7, 3, epoch=5)
    assert values and values.answer(int, 7, 5) == 3 and values.item(7, 5) == 3
    assert values.answer(int, 7, 6) is MISS and values.item(7, 6) is MISS  # a call since
    assert values.answer(int, 8, 5) is MISS  # not an item seen


def test_each_conversion_is_torchs() -> None:
    values = ItemValues()
    values.note(1, 2.75, 0)
    values.note(2, True, 0)
    values.note(3, math.nan, 0)
    values.note(4, 9, 0)
    assert values.answer(int, 1, 0) == 2 and values.answer(float, 2, 0) == 1.0
    assert values.answer(bool, 1, 0) is True
    assert values.answer(int, 3, 0) is MISS  # torch words this error its own way
    assert values.answer(operator.index, 4, 0) == 9
    assert values.answer(operator.index, 1, 0) is MISS  # a float tensor: torch's TypeError
    assert values.answer(operator.index, 2, 0) is MISS
    assert values.answer(repr, 4, 0) is MISS


def test_the_table_is_bounded() -> None:
    values = ItemValues()
    for hid in range(KEEP + 1):
        values.note(hid, hid, 0)
    assert values.item(KEEP, 0) == KEEP and values.item(0, 0) is MISS
