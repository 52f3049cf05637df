"""The values of a small tensor's items, come with its iteration.

``for i in ix: total += int(i)`` over a remote 1-D tensor hands the script 0-d tensor
proxies, and every ``int(i)`` was a round trip. The worker sends the tensor's values
with its items (``acceptor/_iteration.py``: ints, floats and booleans, ``tolist()``'s
Python numbers, which ``item()`` gives too), and the client answers ``int``, ``float``,
``bool``, ``operator.index`` and ``.item()`` of those items from them while the
session's epoch stands: no call that may change a remote object was sent since the
iteration began, so the tensor (of which the items are views) still holds them.

Each answer is the one torch gives: ``int`` of a float truncates as Python's does,
but only finite floats are answered (torch words NaN and infinity errors its own way);
``operator.index`` only of ints (a float or bool tensor's error is torch's to give).
Pure: handle ids, numbers and epochs in, numbers out.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Final

from tether.client._draws import MISS

#: Items remembered at most (all forgotten at once past this).
KEEP: Final = 1 << 16


class ItemValues:
    """Values of iterated items by handle id, each good at one epoch."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[int, tuple[int, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._values)

    def note(self, hid: int, value: Any, epoch: int) -> None:
        """Item ``hid`` holds ``value`` at ``epoch``."""
        values = self._values
        if len(values) >= KEEP:
            values.clear()
        values[hid] = (epoch, value)

    def answer(self, fn: Any, hid: int, epoch: int) -> Any:  # (hid 0: no handle)
        """``fn(item)`` for ``fn`` one of int, float, bool, operator.index, or
        :data:`MISS` where the worker must answer."""
        value = self.item(hid, epoch)
        if value is MISS:
            return MISS
        t = type(value)
        if fn is float or fn is bool:
            return fn(value)
        if fn is int:
            return int(value) if t is not float or math.isfinite(value) else MISS
        if fn is operator.index:
            return value if t is int else MISS
        return MISS

    def item(self, hid: int, epoch: int) -> Any:
        """``item.item()``, or :data:`MISS`."""
        known = self._values.get(hid)
        return known[1] if known is not None and known[0] == epoch else MISS
