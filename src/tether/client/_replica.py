"""Local copies of small remote arrays that the script reads element by element.

Python loops over a remote numpy array's items (``x[i] * y[j]`` in a double
loop, ``int(labels[k])``, ``[a for a, v in enumerate(q[s]) if v == np.max(q[s])]``)
would cost a round trip per read. The client answers such reads from a local,
read-only copy of the array instead:

* element reads (``x[i]``, ``x[i, j]``) and ``len``: an array of at most
  :data:`SMALL_BYTES` comes with the first read; a larger one is fetched after
  :data:`STREAK` reads in a row with nothing else sent;
* order-free reductions of the whole array to one value (``np.max(x)``,
  ``x.argmax()``, ``np.any(x)``: ``acceptor/_snapshot.REDUCTIONS``) on arrays of
  booleans, integers or floats: the first one asks the worker to send the array
  instead of the answer when it is small (one round trip either way);
* iteration of a one-dimensional array: the copy is fetched instead of the items
  (``client/_proxy.RemoteIterator``).

Coherence. A copy is good while the session's *epoch* has not moved: the epoch
counts the calls sent that may change a remote object. Calls known to change
nothing keep it (:meth:`Session.quietly`): the reads, copies and reductions above,
the checks of numpy's generator in and out (``client/_draws.py``), views, and
arithmetic on arrays whose kind is known (numbers: numpy runs no Python code).
A write to one array (``q[s, a] = v``, ``q[s] += v``) moves the epoch, but when the
worker has told which memory the array lives in (``acceptor/_snapshot.memory_root``:
every array that could see the write lives in the same), copies of other memory stay
good (:meth:`Replicas.wrote`). Any other call (a function that might change an array
in place) makes every copy stale; the next read goes to the worker again. The
values are the ones the worker would have returned: the client's numpy scalars
(see ``_np_scalar``).

Only when the client has a numpy of its own (the worker then sends numpy's numbers
by value), only for numbers, booleans and strings, and only for arrays up to
:data:`MAX_BYTES`.
"""

from __future__ import annotations

import io
import operator
from typing import TYPE_CHECKING, Any, Final

from tether.client._draws import MISS

if TYPE_CHECKING:
    from tether.client._remoting import Remoting

#: Reads in a row, with nothing else sent, before the array is fetched.
STREAK: Final = 16
#: Larger arrays are never copied.
MAX_BYTES: Final = 16 << 20
#: Arrays up to this size come with the first read of one of their elements.
SMALL_BYTES: Final = 16 << 10
#: Copies kept at once, and their bytes at most (the oldest go first).
KEEP: Final = 64
KEEP_BYTES: Final = 64 << 20
#: Arrays whose kind and memory are remembered (forgotten all at once past this).
KNOWN_MAX: Final = 1 << 16
#: ndarray methods that are numpy's reductions of the same name (with no arguments).
REDUCING_METHODS: Final = frozenset({"max", "min", "argmax", "argmin", "any", "all"})
_EXACT_KINDS: Final = "biuf"  # as acceptor/_snapshot.EXACT_KINDS
#: Operators whose result on float64 arrays is one IEEE operation per element: the
#: same bits on every machine and numpy version (not ``**``, ``//``, ``%``, ``@``).
EXACT_OPERATORS: Final = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
     operator.pos, abs, operator.lt, operator.le, operator.gt, operator.ge, operator.eq,
     operator.ne}
)  # fmt: skip
_UNKNOWN: Final = object()


class _Copy:
    __slots__ = ("array", "epoch", "root")

    def __init__(self, epoch: int, array: Any, root: int | None) -> None:
        self.epoch = epoch
        self.array = array
        self.root = root


class Replicas:
    """One session's local copies of remote arrays (see the module docstring)."""

    def __init__(self, session: Remoting) -> None:
        import numpy  # (the client has one: no copies are made without)

        self._np = numpy
        self._s = session
        self._copies: dict[int, _Copy] = {}  # handle id -> its copy
        self._known: dict[int, tuple[str, int | None]] = {}  # handle id -> (kind, memory)
        self._refused: set[int] = set()  # handle ids that cannot be copied
        self._unreduced: set[int] = set()  # handle ids reduced by the worker
        self._no_items: set[int] = set()  # handle ids not iterated over a copy
        self._large: set[int] = set()  # handle ids of arrays over SMALL_BYTES
        self._ndim: dict[int, int | None] = {}  # handle id -> ndim, when told
        self._streak = 0
        self._streak_epoch = -1
        self._helpers: Any = None  # the worker's acceptor/_snapshot module
        self._reductions: dict[int, str | None] = {}  # function handle id -> numpy name

    # -- what the session asks -------------------------------------------------------
    def known(self, obj: Any) -> tuple[str, int | None] | None:
        """The dtype kind and memory key of remote array ``obj``, if a copy told them."""
        return self._known.get(obj._t_id)

    def wrote(
        self,
        root: int,
        before: int,
        after: int,
        target: Any = None,
        index: Any = None,
        value: Any = None,
    ) -> None:
        """A write to memory ``root`` moved the epoch from ``before`` to ``after``:
        copies of other memory that were good stay good. With ``target``, the write
        was ``target[index] = value``: a good copy of ``target`` takes the same write
        when it is one number of the copy's own kind (see :func:`_write_through`)."""
        hid = None if target is None else target._t_id
        for h, copy in list(self._copies.items()):
            if copy.epoch != before or copy.root is None:
                del self._copies[h]
            elif copy.root != root or (
                h == hid and _write_through(self._np, copy.array, index, value)
            ):
                copy.epoch = after
            else:
                del self._copies[h]

    def read(self, array: Any, index: Any) -> Any:
        """``array[index]`` for a remote ndarray and an int (or tuple of ints) index."""
        if type(index) is tuple and not all(type(k) is int for k in index):
            return self._s.apply_remote(operator.getitem, array, index)
        hid = array._t_id
        epoch = self._s.epoch
        local = self._valid(hid)
        if local is not None:
            if _fits(local, index):
                return local[index]
        elif hid not in self._large:
            ndim = self._ndim.get(hid)
            arity = len(index) if type(index) is tuple else 1
            if ndim is None or ndim == arity:
                read_or_copy = self._snapshot().read_or_copy
                with self._s.quietly():
                    how, answer = read_or_copy(array, index, SMALL_BYTES)
                if how == 0:
                    self._large.add(hid)  # (an array's size never changes)
                    return answer
                if how == 1:
                    local = self._keep(hid, answer)
                    if _fits(local, index):
                        return local[index]
                elif len(self._ndim) < KNOWN_MAX:
                    self._ndim[hid] = answer  # a row of a large array: asked as usual
        elif epoch == self._streak_epoch:
            self._streak += 1
            if self._streak >= STREAK and hid not in self._refused:
                local = self._fetch(array)
                if local is None:
                    self._refused.add(hid)
                elif _fits(local, index):
                    return local[index]
        else:
            self._streak, self._streak_epoch = 1, epoch
        with self._s.quietly():
            return self._s.apply_remote(operator.getitem, array, index)

    def length(self, array: Any) -> int:
        """``len(array)``: it changes nothing, so it keeps the copies good."""
        local = self._valid(array._t_id)
        if local is not None:
            return len(local)
        with self._s.quietly():
            return self._s.value_remote(len, array)  # type: ignore[no-any-return]

    def reduce(self, fn: Any, array: Any) -> Any:
        """``fn(array)`` for a remote function ``fn`` and a remote ndarray, or
        :data:`MISS` when it must be sent as usual (``fn`` is not one of numpy's
        order-free reductions, or the array cannot be copied)."""
        name = self._reductions.get(fn._t_id, _UNKNOWN)
        if name is _UNKNOWN:
            reduction_name = self._snapshot().reduction_name
            with self._s.quietly():
                name = reduction_name(fn)
            self._reductions[fn._t_id] = name
        if name is None:
            return MISS
        return self._reduced(str(name), array, None)

    def reduce_method(self, array: Any, name: str) -> Any:
        """``array.<name>()`` for a name in :data:`REDUCING_METHODS`, or :data:`MISS`."""
        return self._reduced(name, array, name)

    def made(self, result: Any, fn: Any, args: tuple[Any, ...]) -> None:
        """``result = fn(*args)`` was just sent, for one of :data:`EXACT_OPERATORS`: when
        every operand is a float64 array with a good copy or a plain number, the result's
        copy is made here, as numpy makes it everywhere (each element is one IEEE
        operation), and the worker need not send it."""
        numpy = self._np
        operands = []
        for a in args:
            t = type(a)
            if t is float or t is int or t is numpy.float64:
                operands.append(a)
                continue
            local = self._valid(a._t_id) if hasattr(a, "_t_id") else None
            if local is None or local.dtype != numpy.float64:
                return
            operands.append(local)
        try:
            with numpy.errstate(all="ignore"):
                value = fn(*operands)
        except Exception:
            return  # the worker raises it, where the script waits next
        if type(value) is numpy.ndarray and value.dtype in (numpy.float64, numpy.bool_):
            value.flags.writeable = False
            self._put(result._t_id, value, None)  # (new memory: no key known)

    def items(self, array: Any) -> Any:
        """A good one-dimensional copy of ``array`` to iterate over, or None."""
        hid = array._t_id
        local = self._valid(hid)
        if local is None:
            if hid in self._refused or hid in self._no_items:
                return None
            local = self._fetch(array, only_1d=True)
            if local is None:
                self._no_items.add(hid)  # (an array's shape and kind never change)
                return None
        return local if local.ndim == 1 else None

    # -- copies ----------------------------------------------------------------------
    def _valid(self, hid: int) -> Any:
        """The copy of array ``hid`` if it is still good, else None."""
        copy = self._copies.get(hid)
        if copy is None:
            return None
        if copy.epoch == self._s.epoch:
            return copy.array
        del self._copies[hid]
        return None

    def _reduced(self, name: str, array: Any, method: str | None) -> Any:
        hid = array._t_id
        if hid in self._unreduced:
            return MISS
        local = self._valid(hid)
        if local is None:
            reduce_or_copy = self._snapshot().reduce_or_copy
            with self._s.quietly():
                copied, answer = reduce_or_copy(name, array, SMALL_BYTES)
            if not copied:
                self._unreduced.add(hid)  # (an array's size and kind never change)
                return answer
            local = self._keep(hid, answer)
        if local.dtype.kind not in _EXACT_KINDS or not local.size:
            self._unreduced.add(hid)  # (a copy made for element reads)
            return MISS
        if method is not None:
            return getattr(local, method)()
        return getattr(self._np, name)(local)

    def _snapshot(self) -> Any:
        if self._helpers is None:
            with self._s.quietly():
                self._helpers = self._s.import_module("tether.acceptor._snapshot")
        return self._helpers

    def _fetch(self, array: Any, *, only_1d: bool = False) -> Any:
        """The array's contents as a read-only local array (kept), or None."""
        array_bytes = self._snapshot().array_bytes
        with self._s.quietly():
            copied = array_bytes(array, MAX_BYTES, only_1d)
        return None if copied is None else self._keep(array._t_id, copied)

    def _keep(self, hid: int, copied: tuple[bytes, int | None]) -> Any:
        blob, root = copied
        local = self._np.load(io.BytesIO(blob), allow_pickle=False)
        local.flags.writeable = False
        self._put(hid, local, root)
        return local

    def _put(self, hid: int, local: Any, root: int | None) -> None:
        copies = self._copies
        copies.pop(hid, None)
        total = local.nbytes + sum(c.array.nbytes for c in copies.values())
        while copies and (len(copies) >= KEEP or total > KEEP_BYTES):
            total -= copies.pop(next(iter(copies))).array.nbytes
        copies[hid] = _Copy(self._s.epoch, local, root)
        if len(self._known) >= KNOWN_MAX:
            self._known.clear()
            self._ndim.clear()
        self._known[hid] = (local.dtype.kind, root)
        # (so that a row read of a 2-D array whose copy went stale is asked for as
        # usual, not answered by fetching the whole array again to find it does not fit)
        self._ndim[hid] = local.ndim


def _write_through(numpy: Any, local: Any, index: Any, value: Any) -> bool:
    """Apply ``local[index] = value`` to a copy, if it is one element set to a float
    (a float array) or a bool (a bool array): writes numpy makes the same way
    everywhere and that cannot fail once the index fits. False if not applied."""
    kind = local.dtype.kind
    if kind == "f":
        if type(value) is not float and not isinstance(value, numpy.floating):
            return False
    elif kind != "b" or (type(value) is not bool and type(value) is not numpy.bool_):
        return False
    if isinstance(index, numpy.integer):
        index = int(index)  # (an action drawn by numpy)
    elif type(index) is tuple:
        index = tuple(int(k) if isinstance(k, numpy.integer) else k for k in index)
    if type(index) is int:
        if local.ndim != 1 or not -len(local) <= index < len(local):
            return False
    elif type(index) is tuple and all(type(k) is int for k in index) and len(index) == local.ndim:
        if not all(-n <= k < n for k, n in zip(index, local.shape, strict=True)):
            return False
    else:
        return False
    local.flags.writeable = True
    try:
        local[index] = value
    finally:
        local.flags.writeable = False
    return True


def _fits(local: Any, index: Any) -> bool:
    """True if ``local[index]`` is one element (a number, not a sub-array)."""
    ndim: int = local.ndim
    return ndim == 1 if type(index) is int else len(index) == ndim
