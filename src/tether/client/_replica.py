"""Local copies of small remote arrays that the script reads element by element.

Python loops over a remote numpy array's items (``x[i] * y[j]`` in a double
loop, ``int(labels[k])``) would cost a round trip per read. When a script reads
elements of remoted numpy arrays with nothing else sent in between, the client
fetches the array once, read-only, and answers further reads of it locally.

Coherence: a copy is good while the session has sent no call other than such
reads (and ``len``). Any other call (a write to the array, a function that might change it in
place) makes every copy stale; the next read goes to the worker again, and the
copy is fetched anew only after another run of reads. The values are the ones a
read would have returned: the client's numpy scalars (see ``_np_scalar``).

Only when the client has a numpy of its own (the worker then sends numpy's numbers
by value), only for numbers, booleans and strings, and only for arrays up to
:data:`MAX_BYTES`.
"""

from __future__ import annotations

import io
import operator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tether.client._remoting import Remoting

#: Reads in a row, with nothing else sent, before the array is fetched.
STREAK: Final = 16
#: Larger arrays are never copied.
MAX_BYTES: Final = 16 << 20
#: Copies kept at once (the oldest goes first).
KEEP: Final = 8


class Replicas:
    """One session's local copies of remote arrays (see the module docstring)."""

    def __init__(self, session: Remoting) -> None:
        self._s = session
        self._copies: dict[int, tuple[int, Any]] = {}  # handle id -> (epoch, array)
        self._refused: set[int] = set()  # handle ids that cannot be copied
        self._reads = 0  # calls sent by this class: they change nothing
        self._streak = 0
        self._streak_epoch = -1
        self._snapshot: Any = None

    def _epoch(self) -> int:
        return self._s.calls_sent - self._reads

    def read(self, array: Any, index: Any) -> Any:
        """``array[index]`` for a remote ndarray and an int (or tuple of ints) index."""
        if type(index) is tuple and not all(type(k) is int for k in index):
            return self._s.apply_remote(operator.getitem, array, index)
        hid = array._t_id
        epoch = self._epoch()
        copy = self._copies.get(hid)
        if copy is not None:
            if copy[0] == epoch:
                if _fits(copy[1], index):
                    return copy[1][index]
            else:
                del self._copies[hid]
        elif epoch == self._streak_epoch:
            self._streak += 1
            if self._streak >= STREAK and hid not in self._refused:
                local = self._fetch(array)
                if local is None:
                    self._refused.add(hid)
                else:
                    if len(self._copies) >= KEEP:
                        del self._copies[next(iter(self._copies))]
                    self._copies[hid] = (self._epoch(), local)  # (the first fetch imports)
                    if _fits(local, index):
                        return local[index]
        else:
            self._streak, self._streak_epoch = 1, epoch
        self._reads += 1
        return self._s.apply_remote(operator.getitem, array, index)

    def length(self, array: Any) -> int:
        """``len(array)``: it changes nothing, so it keeps the copies good."""
        copy = self._copies.get(array._t_id)
        if copy is not None and copy[0] == self._epoch():
            return len(copy[1])
        self._reads += 1
        return self._s.value_remote(len, array)  # type: ignore[no-any-return]

    def _fetch(self, array: Any) -> Any:
        """The array's contents as a read-only local array, or None."""
        if self._snapshot is None:
            self._snapshot = self._s.import_module("tether.acceptor._snapshot").array_bytes
        self._reads += 1
        blob = self._s.call(self._snapshot, (array, MAX_BYTES), {})
        if not isinstance(blob, bytes):
            return None
        import numpy

        local = numpy.load(io.BytesIO(blob), allow_pickle=False)
        local.flags.writeable = False
        return local


def _fits(local: Any, index: Any) -> bool:
    """True if ``local[index]`` is one element (a number, not a sub-array)."""
    ndim: int = local.ndim
    return ndim == 1 if type(index) is int else len(index) == ndim
