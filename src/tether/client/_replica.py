"""Local copies of small remote arrays that the script reads element by element.

Python loops over a remote numpy array's items (``x[i] * y[j]``, ``int(labels[k])``,
``[a for a, v in enumerate(q[s]) if v == np.max(q[s])]``) would cost a round trip per
read. The client answers such reads from a local, read-only copy instead:

* element reads and ``len``: an array of at most :data:`SMALL_BYTES` comes with the
  first read, a larger one after :data:`STREAK` reads in a row with nothing else sent;
* order-free reductions (``np.max(x)``, ``x.argmax()``: ``acceptor/_snapshot``) of
  booleans, ints or floats, sums and products of 64-bit ints, means of booleans and
  small ints: the first one asks for the array instead of the answer when it is small;
* iteration of a one-dimensional array, and rows of a small one, each with its copy
  (``client/_proxy.RemoteIterator``);
* :data:`LOCAL_METHODS` (``tolist``, ``item``, ``copy``) and :data:`SHAPE_ATTRS`.

Arrays the worker makes from what the client has are copied without asking
(``client/_exact.py`` says when the client's numpy makes the same): results of
arithmetic on good copies (:meth:`made`), arrays built from plain data
(``np.array([i, j])``, ``np.zeros((4, 4))``), from a good copy (``np.zeros_like(v)``,
``v.copy()``) or from a choice's indices drawn here (:meth:`chosen`), which the worker
builds under a memory key the client names (``acceptor/_snapshot.build``). So a grid
world's step, ``(np.array(state) + action).tolist()``, waits for nothing. A small
array whose copy went stale is fetched again when an operation needs it.

Coherence. A copy is good while the session's *epoch* has not moved: the epoch
counts the calls sent that may change a remote object. Calls known to change
nothing keep it (:meth:`Session.quietly`): the reads, copies and reductions above,
numpy's draws and the checks of its generator (``client/_draws.py``), views, and
arithmetic on arrays whose kind is known (numbers: numpy runs no Python code).
A write to one array (``q[s, a] = v``) moves the epoch, but when the worker has
told which memory the array lives in (``acceptor/_snapshot.memory_root``), copies
of other memory stay good (:meth:`Replicas.wrote`). Any other call makes every copy
stale. The table of copies (what it keeps, for how long) is ``client/_copies.py``.
The values are the worker's: the client's numpy scalars. Only when the client has a
numpy of its own, only for numbers, booleans and strings, and only for arrays up to
:data:`MAX_BYTES`.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tether.client._copies import KNOWN_MAX, SMALL_BYTES, CopyTable
from tether.client._draws import MISS
from tether.client._exact import (
    CONSTRUCTORS,
    COPIERS,
    COUNT_REDUCTIONS,
    INT_REDUCTIONS,
    REDUCTIONS,
    Exact,
)

if TYPE_CHECKING:
    from tether.client._remoting import Remoting

#: Reads in a row, with nothing else sent, before the array is fetched.
STREAK: Final = 16
#: Larger arrays are never copied.
MAX_BYTES: Final = 16 << 20
#: ndarray methods that are numpy's reductions of the same name (with no arguments).
REDUCING_METHODS: Final = frozenset({"max", "min", "argmax", "argmin", "any", "all", "sum",
                                     "prod", "mean"})  # fmt: skip
#: ndarray attributes a good copy answers (plain numbers and tuples of them).
SHAPE_ATTRS: Final = frozenset({"shape", "ndim", "size", "nbytes", "itemsize"})
#: ndarray methods (with no arguments) that a good copy answers: reductions, values
#: (``tolist``, ``item``) and ``copy`` (built by the worker too, its copy made here).
LOCAL_METHODS: Final = REDUCING_METHODS | {"tolist", "item", "copy"}
_UNKNOWN: Final = object()


class Replicas:
    """One session's local copies of remote arrays (see the module docstring)."""

    def __init__(self, session: Remoting) -> None:
        import numpy  # (the client has one: no copies are made without)

        self._np = numpy
        self._exact = Exact(numpy)
        self._s = session
        self._table = table = CopyTable(lambda: session.epoch)
        self._copies = table.copies  # (read on the hot path)
        self._known = table.known
        self._small = table.small
        self._ndim = table.ndim
        self._valid = table.valid
        self._put = table.put
        self._refused: set[int] = set()  # handle ids that cannot be copied
        self._unreduced: set[int] = set()  # handle ids reduced by the worker
        self._unsummed: set[int] = set()  # the same, for INT_REDUCTIONS
        self._uncounted: set[int] = set()  # the same, for COUNT_REDUCTIONS
        self._no_items: set[int] = set()  # handle ids not iterated over a copy
        self._large: set[int] = set()  # handle ids of arrays over SMALL_BYTES
        self._streak = 0
        self._streak_epoch = -1
        self._helpers: Any = None  # the worker's acceptor/_snapshot module
        self._asked: dict[tuple[str, int], Any] = {}  # (helper, function id) -> answer
        self._default_int: str | None = None  # the worker's, asked when first needed
        self._last_key = 0  # memory keys named for the worker (negative)

    def forgetting(self, release: Callable[[int], None]) -> Callable[[int], None]:
        """``release`` (what a dying proxy calls), also dropping the handle's copy:
        the arrays a loop makes and drops (``np.array(state) + action``) do not push
        the ones it keeps using out (``client/_copies.CopyTable.forgetting``)."""
        return self._table.forgetting(release)

    # -- what the session asks -------------------------------------------------------
    def known(self, obj: Any) -> tuple[str, int | None] | None:
        """The dtype kind and memory key of remote array ``obj``, if a copy told them."""
        return self._known.get(obj._t_id)

    def same_array(self, proxy: Any, known: tuple[str, int | None]) -> None:
        """``proxy`` is another handle of an array whose kind and memory are ``known``."""
        self._known[proxy._t_id] = known

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
        when it is one number of the copy's own kind (:meth:`Exact.write_through`)."""
        hid = None if target is None else target._t_id
        write_through = self._exact.write_through
        self._table.wrote(root, before, after, hid, lambda a: write_through(a, index, value))

    def specialize(self, desc: Any, cls: type) -> None:
        """Give numpy's ndarray mirror a ``__getitem__`` that reads an element of a good
        one-dimensional copy before anything else: ``x[i]`` in a Python loop is one
        frame, not four (the mirror's own method takes every other case)."""
        generic = cls.__dict__.get("__getitem__")
        if desc.module != "numpy" or desc.qualname != "ndarray" or generic is None:
            return
        copies, s = self._copies, self._s

        def __getitem__(obj: Any, index: Any) -> Any:
            if type(index) is int:
                copy = copies.get(obj._t_id)
                if copy is not None and copy.epoch == s.epoch and copy.array.ndim == 1:
                    return copy.array[index]
            return generic(obj, index)

        type.__setattr__(cls, "__getitem__", __getitem__)  # the mirror's only

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
                read_or_copy = self.helpers().read_or_copy
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

    def attribute(self, array: Any, name: str) -> Any:
        """``array.<name>`` for a name in :data:`SHAPE_ATTRS` from a good copy, or
        :data:`MISS` (no copy is fetched for it). ``x.shape = ...`` is a call that
        may change anything: the copy is stale after it."""
        local = self._valid(array._t_id)
        return MISS if local is None else getattr(local, name)

    def length(self, array: Any) -> int:
        """``len(array)``: it changes nothing, so it keeps the copies good."""
        local = self._valid(array._t_id)
        if local is not None:
            return len(local)
        with self._s.quietly():
            return self._s.value_remote(len, array)  # type: ignore[no-any-return]

    def reduce(self, fn: Any, array: Any) -> Any:
        """``fn(array)`` for a remote function ``fn`` and a remote ndarray: one of
        numpy's order-free reductions computed on a copy, or one of :data:`COPIERS`
        built as in :meth:`from_plain`; :data:`MISS` when it must be sent as usual."""
        name = self.asked("numpy_name", fn)
        if name in COPIERS:
            local = self._good(array)
            mine = None if local is None else self._exact.copied(name, local, self._worker_int)
            if mine is None:
                return MISS
            return self._built(name, (array,), mine)  # np.zeros_like(v): new memory, known
        if name not in REDUCTIONS:
            return MISS
        return self._reduced(name, array, None)

    def method(self, array: Any, name: str) -> Any:
        """``array.<name>()`` for a name in :data:`LOCAL_METHODS`, or :data:`MISS`."""
        if name in REDUCING_METHODS:
            return self._reduced(name, array, name)
        local = self._good(array)
        if local is None or (name == "item" and local.size != 1):
            return MISS
        if name != "copy":
            return getattr(local, name)()  # tolist, item: values
        mine = local.copy()  # (as ndarray.copy makes it: C order)
        mine.flags.writeable = False
        return self._built("ndarray.copy", (array,), mine)

    def from_plain(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``fn(*args)`` for a remote function ``fn`` and plain data (numbers, lists and
        tuples of them): an array built here and by the worker alike (one of
        :data:`CONSTRUCTORS`), or one of numpy's :data:`REDUCTIONS` computed here;
        :data:`MISS` when it must be sent as usual."""
        if kwargs or not args or not self._exact.plain(args):
            return MISS
        name = self.asked("numpy_name", fn)
        if name in REDUCTIONS:
            return self._exact.reduce(name, args, self._worker_int)
        if name not in CONSTRUCTORS:
            return MISS
        local = self._exact.build(name, args, self._worker_int)
        if local is None:
            return MISS
        return self._built(name, args, local)

    def takes(self, population: Any) -> bool:
        """True if the worker builds ``population`` (plain data) as an array exactly
        as it is built here: what :meth:`chosen` needs before a choice is drawn."""
        return self._exact.plain((population,)) and (
            self._exact.build("asarray", (list(population),), self._worker_int) is not None
        )

    def chosen(self, population: Any, picked: list[int]) -> Any:
        """The array ``np.random.choice(population, size=k)`` makes of the indices
        ``picked`` (drawn here): the worker builds ``np.take(population, picked)``
        (``np.asarray(picked)`` for an int population), its copy made here."""
        args: tuple[Any, ...]
        if type(population) is int:
            name, args = "asarray", (picked,)
        else:
            name, args = "take", (list(population), picked)
        local = self._exact.build(name, args, self._worker_int)
        if local is None:  # (checked by takes before the draw)
            raise AssertionError(f"np.{name} of a chosen population was not built here")
        return self._built(name, args, local)

    def _built(self, name: str, args: tuple[Any, ...], local: Any) -> Any:
        """Have the worker build ``numpy.<name>(*args)`` (or copy ``args[0]``) under
        a memory key named here, pipelined and quietly, and keep ``local`` as the
        result's copy."""
        self._last_key -= 1
        key = self._last_key
        build = self.helpers().build
        with self._s.quietly():  # a new array: nothing changes
            result = build(name, key, *args)
        if self._s.is_ndarray(result):
            self._put(result._t_id, local, key)
        return result

    def made(self, result: Any, fn: Any, args: tuple[Any, ...]) -> None:
        """``result = fn(*args)`` was just sent, for one of ``_exact.EXACT_OPERATORS``:
        when every operand is a plain number or an array with a good copy that
        :class:`Exact` allows, the result's copy is made here and the worker need not
        send it."""
        exact = self._exact
        operands = []
        for a in args:
            if exact.operand(a):
                operands.append(a)
                continue
            local = self._good(a) if hasattr(a, "_t_id") else None
            if local is None or not exact.array_operand(local):
                return
            operands.append(local)
        value = exact.operate(fn, operands)
        if value is not None:
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

    def rows(self, array: Any, copied: tuple[bytes, int | None]) -> Any:
        """The copy of ``array`` that came with its rows in an ITER reply, kept as
        the array's copy; with its memory key, for :meth:`row`."""
        return self._keep(array._t_id, copied), copied[1]

    def row(self, row: Any, rows: Any, k: int) -> None:
        """Row ``k`` of ``rows`` as the copy of the proxy ``row`` (the row the
        iteration hands out now: its memory is the array's)."""
        local, root = rows
        mine = local[k].copy()  # (its own memory here: a write can go through it)
        mine.flags.writeable = False
        self._put(row._t_id, mine, root)

    def _worker_int(self) -> str:
        """The worker's default int dtype (``acceptor/_snapshot.default_int``), asked once."""
        if self._default_int is None:
            default_int = self.helpers().default_int
            with self._s.quietly():
                self._default_int = str(default_int())
        return self._default_int

    def asked(self, helper: str, fn: Any) -> Any:
        """What the worker's ``acceptor/_snapshot.<helper>`` says of remote function
        ``fn`` (``numpy_name``: one of numpy's reductions or constructors;
        ``pure_kind``: one that changes nothing), asked once per function."""
        key = (helper, fn._t_id)
        answer = self._asked.get(key, _UNKNOWN)
        if answer is _UNKNOWN:
            ask = getattr(self.helpers(), helper)
            with self._s.quietly():
                answer = ask(fn)
            if len(self._asked) >= 4096:
                self._asked.clear()
            self._asked[key] = answer
        return answer

    # -- copies ----------------------------------------------------------------------
    def _good(self, array: Any) -> Any:
        """A good copy of ``array``: the one kept, or, for a small array whose copy
        went stale, a new one (a round trip now, rather than one for each use of it
        until the next call that may change it); else None."""
        hid = array._t_id
        local = self._valid(hid)
        if local is None and hid in self._small:
            local = self._fetch(array)
        return local

    def _reduced(self, name: str, array: Any, method: str | None) -> Any:
        hid = array._t_id
        if name in INT_REDUCTIONS:
            refused = self._unsummed
        elif name in COUNT_REDUCTIONS:
            refused = self._uncounted
        else:
            refused = self._unreduced
        if len(refused) >= KNOWN_MAX:
            refused.clear()  # (a fresh array each step, reduced by the worker: forgotten)
        if hid in refused:
            return MISS
        local = self._valid(hid)
        if local is None:
            reduce_or_copy = self.helpers().reduce_or_copy
            with self._s.quietly():
                copied, answer = reduce_or_copy(name, array, SMALL_BYTES)
            if not copied:
                refused.add(hid)  # (an array's size and kind never change)
                return answer
            local = self._keep(hid, answer)
        if not local.size or not self._exact.reducible(name, local):
            refused.add(hid)  # (a copy made for element reads)
            return MISS
        if method is not None:
            return getattr(local, method)()
        return getattr(self._np, name)(local)

    def helpers(self) -> Any:
        """The worker's ``acceptor/_snapshot`` module (imported there once)."""
        if self._helpers is None:
            with self._s.quietly():
                self._helpers = self._s.import_module("tether.acceptor._snapshot")
        return self._helpers

    def _fetch(self, array: Any, *, only_1d: bool = False) -> Any:
        """The array's contents as a read-only local array (kept), or None."""
        array_bytes = self.helpers().array_bytes
        with self._s.quietly():
            copied = array_bytes(array, MAX_BYTES, only_1d)
        return None if copied is None else self._keep(array._t_id, copied)

    def _keep(self, hid: int, copied: tuple[bytes, int | None]) -> Any:
        blob, root = copied
        local = self._np.load(io.BytesIO(blob), allow_pickle=False)
        local.flags.writeable = False
        self._put(hid, local, root)
        return local


def _fits(local: Any, index: Any) -> bool:
    """True if ``local[index]`` is one element (a number, not a sub-array)."""
    ndim: int = local.ndim
    return ndim == 1 if type(index) is int else len(index) == ndim
