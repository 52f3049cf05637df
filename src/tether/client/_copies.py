"""The table of one session's array copies (client/_replica.py reads and fills it).

What is kept: at most :data:`KEEP` copies and :data:`KEEP_BYTES` bytes, the oldest
going first, and the copies of proxies the script dropped going at the next
:meth:`CopyTable.put` (a loop's temporaries do not push out the tables it keeps
using). What is remembered of arrays once copied (their kind, memory key, size class
and dimensions) outlives their copies, up to :data:`KNOWN_MAX` arrays.

When a copy is good: while the session's *epoch* has not moved (the calls sent that
may change a remote object); a write to one memory keeps the copies of other memory
good (:meth:`CopyTable.wrote`). Pure bookkeeping: arrays in, arrays out; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

#: Copies kept at once, and their bytes at most (the oldest go first).
KEEP: Final = 64
KEEP_BYTES: Final = 64 << 20
#: Arrays whose kind and memory are remembered (forgotten all at once past this).
KNOWN_MAX: Final = 1 << 16
#: Arrays up to this size come with the first read of one of their elements, and are
#: fetched again when their copy went stale (client/_replica.py).
SMALL_BYTES: Final = 16 << 10


class Copy:
    """One array's copy: the epoch it is good at, the read-only array, its memory key."""

    __slots__ = ("array", "epoch", "root")

    def __init__(self, epoch: int, array: Any, root: int | None) -> None:
        self.epoch = epoch
        self.array = array
        self.root = root


class CopyTable:
    """Copies by handle id, and what is known of the arrays (see the module docstring).
    ``epoch`` is the session's, read when a copy is checked or made."""

    def __init__(self, epoch: Callable[[], int]) -> None:
        self._epoch = epoch
        self.copies: dict[int, Copy] = {}  # handle id -> its copy
        self.known: dict[int, tuple[str, int | None]] = {}  # handle id -> (kind, memory)
        self.small: set[int] = set()  # handle ids of arrays copied, at most SMALL_BYTES
        self.ndim: dict[int, int | None] = {}  # handle id -> ndim, when told
        self._dropped: list[int] = []  # handle ids whose proxies died (see forgetting)

    def forgetting(self, release: Callable[[int], None]) -> Callable[[int], None]:
        """``release`` (what a dying proxy calls), also noting the handle's copy as
        dropped. Noted, not deleted: a proxy may die in any thread, or in the garbage
        collector while the copies are being walked; they go at the next :meth:`put`."""
        copies, dropped, known = self.copies, self._dropped, self.known

        def forget(hid: int) -> None:
            if hid in copies:
                dropped.append(hid)
            known.pop(hid, None)  # (one dict operation: safe in any thread)
            release(hid)

        return forget

    def valid(self, hid: int) -> Any:
        """The copy of array ``hid`` if it is still good, else None."""
        copy = self.copies.get(hid)
        if copy is None:
            return None
        if copy.epoch == self._epoch():
            return copy.array
        del self.copies[hid]
        return None

    def put(self, hid: int, local: Any, root: int | None) -> None:
        """Keep ``local`` as the copy of array ``hid`` (memory key ``root``), good now."""
        copies, dropped = self.copies, self._dropped
        while dropped:
            copies.pop(dropped.pop(), None)
        copies.pop(hid, None)
        total = local.nbytes + sum(c.array.nbytes for c in copies.values())
        while copies and (len(copies) >= KEEP or total > KEEP_BYTES):
            total -= copies.pop(next(iter(copies))).array.nbytes
        copies[hid] = Copy(self._epoch(), local, root)
        if len(self.known) >= KNOWN_MAX:
            self.known.clear()
            self.small.clear()
            self.ndim.clear()
        self.known[hid] = (local.dtype.kind, root)
        if local.nbytes <= SMALL_BYTES:
            self.small.add(hid)
        # (so that a row read of a 2-D array whose copy went stale is asked for as
        # usual, not answered by fetching the whole array again to find it does not fit)
        self.ndim[hid] = local.ndim

    def wrote(
        self, root: int, before: int, after: int, hid: int | None, took: Callable[[Any], bool]
    ) -> None:
        """A write to memory ``root`` moved the epoch from ``before`` to ``after``:
        copies of other memory that were good stay good, and so does the copy of
        array ``hid`` (the one written) if ``took(its array)`` made the same write."""
        copies = self.copies
        for h, copy in list(copies.items()):
            if copy.epoch != before or copy.root is None:
                del copies[h]
            elif copy.root != root or (h == hid and took(copy.array)):
                copy.epoch = after
            else:
                del copies[h]
