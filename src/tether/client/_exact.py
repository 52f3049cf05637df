"""What the client's numpy makes exactly as the worker's does, wherever each runs.

The client's array copies (client/_replica.py) are good only if every value in them
is the one the worker holds. Where the client makes a copy itself instead of asking
for it, it may use its own numpy only for what these rules allow:

* arithmetic and comparisons (:data:`EXACT_OPERATORS`) of float64 and int64 arrays
  and plain numbers: one IEEE or two's-complement operation per element, and these
  operands promote alike under numpy 1's value-based rules and numpy 2's (not bool
  arrays: numpy 1 makes ``True + 1`` by the value; not ints past 64 bits);
* arrays built from plain data (:data:`CONSTRUCTORS`: ``np.array([i, j])``,
  ``np.zeros((4, 4))``, ``np.arange(n)``, ``np.take(words, [2, 0])``,
  ``np.where(x >= 0, 1, 0)``: a choice, no arithmetic) and from one
  array (:data:`COPIERS`), when the result is float64, bool or strings, or an int
  array and both numpys give a list of ints the same dtype (the caller asks the
  worker, once);
* numpy's order-free reductions (:data:`REDUCTIONS`) of plain data, and means of
  booleans and of integers whose sum is below 2**53 (:data:`COUNT_REDUCTIONS`);
* one number written into a float or bool array.

Pure: numpy in, arrays and verdicts out; no session, no I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Final

from tether.client._draws import MISS

#: Operators whose result on float64 arrays is one IEEE operation per element: the
#: same bits on every machine and numpy version (not ``**``, ``//``, ``%``, ``@``).
EXACT_OPERATORS: Final = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
     operator.pos, abs, operator.lt, operator.le, operator.gt, operator.ge, operator.eq,
     operator.ne}
)  # fmt: skip
#: numpy functions that build an array from plain data (as acceptor/_snapshot.CONSTRUCTORS).
CONSTRUCTORS: Final = frozenset({"array", "asarray", "zeros", "ones", "arange", "take", "where"})
#: numpy functions that build an array from one array (acceptor/_snapshot.COPIERS).
COPIERS: Final = frozenset({"zeros_like", "ones_like", "copy"})
#: numpy reductions (as acceptor/_snapshot.REDUCTIONS and INT_REDUCTIONS) computed here
#: on copies and plain data; the last two on 64-bit ints only (see :meth:`Exact.reducible`).
REDUCTIONS: Final = frozenset({"max", "min", "amax", "amin", "argmax", "argmin", "any",
                               "all", "count_nonzero", "sum", "prod", "mean"})  # fmt: skip
INT_REDUCTIONS: Final = frozenset({"sum", "prod"})
#: Exact on booleans and small integers only (acceptor/_snapshot.COUNT_REDUCTIONS).
COUNT_REDUCTIONS: Final = frozenset({"mean"})
#: Plain numbers in one call's arguments for it to be made here (at most).
MAX_ITEMS: Final = 2048
#: Elements of an array built here (at most).
MAX_ELEMENTS: Final = 2 << 20
_INT64_MIN: Final = -(1 << 63)
_INT64_END: Final = 1 << 63


class Exact:
    """The client's numpy, used only as the module docstring allows."""

    def __init__(self, numpy: Any) -> None:
        self._np = numpy
        self._scalars = (int, float, bool, numpy.float64, numpy.int64, numpy.bool_)
        self._ints = (int, numpy.int64)  # (an int drawn or read from an int64 array)
        self._operands = (numpy.dtype(numpy.float64), numpy.dtype(numpy.int64))
        self._results = (*self._operands, numpy.dtype(numpy.bool_))
        self._default_int = numpy.array([0]).dtype.str

    def plain(self, args: tuple[Any, ...]) -> bool:
        """True if ``args`` are numbers and strings, or lists and tuples of them (at
        most :data:`MAX_ITEMS` in all), that numpy reads the same everywhere."""
        budget = [MAX_ITEMS]
        return all(self._plain(a, budget) for a in args)

    def _plain(self, value: Any, budget: list[int]) -> bool:
        t = type(value)
        if t is list or t is tuple:
            budget[0] -= len(value)
            return budget[0] >= 0 and all(self._plain(v, budget) for v in value)
        if t is int:
            return bool(_INT64_MIN <= value < _INT64_END)
        return t in self._scalars or t is str

    def build(self, name: str, args: tuple[Any, ...], worker_int: Callable[[], str]) -> Any:
        """``numpy.<name>(*args)`` for one of :data:`CONSTRUCTORS` and :meth:`plain`
        ``args``, made here; None where the worker's could differ or be large."""
        if name == "array" or name == "asarray":
            if len(args) != 1 or type(args[0]) not in (list, tuple):
                return None
        elif name == "arange":
            if not 1 <= len(args) <= 3 or not all(type(a) in self._ints for a in args):
                return None
            bounds = [0, int(args[0]), 1] if len(args) == 1 else [*map(int, args), 1][:3]
            if bounds[2] == 0 or len(range(*bounds)) > MAX_ELEMENTS:
                return None
        elif name == "take":  # np.take(population, indices): what a choice drew
            if len(args) != 2 or not all(type(a) in (list, tuple) for a in args):
                return None
            n = len(args[0])
            if not all(type(i) is int and 0 <= i < n for i in args[1]):
                return None
        elif name == "where":  # np.where(x >= 0, 1, 0): a choice between plain data
            if len(args) != 3:
                return None
        elif name == "zeros" or name == "ones":  # a shape
            if len(args) != 1:
                return None
            dims = args[0] if type(args[0]) is tuple else (args[0],)
            if not all(type(d) in self._ints and d >= 0 for d in dims):
                return None
            if math.prod(dims) > MAX_ELEMENTS:
                return None
        else:
            return None
        return self._checked(getattr(self._np, name), args, worker_int)

    def copied(self, name: str, local: Any, worker_int: Callable[[], str]) -> Any:
        """``numpy.<name>(local)`` for one of :data:`COPIERS`, or None."""
        return self._checked(getattr(self._np, name), (local,), worker_int)

    def reduce(self, name: str, args: tuple[Any, ...], worker_int: Callable[[], str]) -> Any:
        """``numpy.<name>(data)`` for one of :data:`REDUCTIONS` and plain data, or
        :data:`MISS`."""
        if name not in REDUCTIONS or len(args) != 1 or type(args[0]) not in (list, tuple):
            return MISS
        try:
            value = getattr(self._np, name)(args[0])
        except Exception:
            return MISS  # the worker raises it, where the script waits next
        if not isinstance(value, self._np.generic) or not self.agrees(value.dtype, worker_int):
            return MISS
        if name in INT_REDUCTIONS and value.dtype.kind != "i":
            return MISS  # (a float sum's rounding depends on the CPU's SIMD path)
        if name in COUNT_REDUCTIONS and not self._counts(self._np.asarray(args[0])):
            return MISS  # (a mean of floats rounds by the order of its sum)
        return value

    def reducible(self, name: str, local: Any) -> bool:
        """True if reduction ``name`` of copy ``local`` is the worker's to the bit:
        the order-free ones on booleans, ints and floats, sums and products on
        64-bit ints (as acceptor/_snapshot.exact_for)."""
        dtype = local.dtype
        if name in INT_REDUCTIONS:
            return bool(dtype.kind in "iu" and dtype.itemsize == 8)
        if name in COUNT_REDUCTIONS:
            return self._counts(local)
        return bool(dtype.kind in "biuf")

    def _counts(self, local: Any) -> bool:
        """Booleans, or integers whose float64 sum is exact in any order (means of
        them round once, alike; as acceptor/_snapshot.counts_exactly)."""
        kind = local.dtype.kind
        if kind == "b":
            return True
        if kind not in "iu" or not local.size:
            return False
        big = max(abs(int(local.max())), abs(int(local.min())))
        return bool(big * local.size < 1 << 53)

    def operand(self, value: Any) -> bool:
        """True for a plain number :meth:`operate` takes as it is."""
        t = type(value)
        if t is int:
            return bool(_INT64_MIN <= value < _INT64_END)  # (numpy 1 and 2 differ past)
        return t is float or t is bool or t is self._np.float64 or t is self._np.int64

    def array_operand(self, local: Any) -> bool:
        """True for a copy :meth:`operate` takes: float64 or int64 (see the docstring)."""
        return local.dtype in self._operands

    def operate(self, fn: Any, operands: list[Any]) -> Any:
        """``fn(*operands)`` for one of :data:`EXACT_OPERATORS` and operands that
        :meth:`operand` and :meth:`array_operand` took: a read-only array, or None."""
        numpy = self._np
        try:
            with numpy.errstate(all="ignore"):
                value = fn(*operands)
        except Exception:
            return None  # the worker raises it, where the script waits next
        if type(value) is not numpy.ndarray or value.dtype not in self._results:
            return None
        value.flags.writeable = False
        return value

    def agrees(self, dtype: Any, worker_int: Callable[[], str]) -> bool:
        """True if the worker makes the same dtype of the same plain data: float64,
        bool and strings (``<U`` of the longest) always, ints when the two numpys'
        default ints are one."""
        numpy = self._np
        if dtype == numpy.float64 or dtype == numpy.bool_ or dtype.kind == "U":
            return True
        return bool(dtype.kind == "i" and dtype.str == self._default_int == worker_int())

    def _checked(
        self, make: Callable[..., Any], args: tuple[Any, ...], worker_int: Callable[[], str]
    ) -> Any:
        try:
            local = make(*args)
        except Exception:
            return None  # the worker raises it, where the script waits next
        if type(local) is not self._np.ndarray or not self.agrees(local.dtype, worker_int):
            return None
        local.flags.writeable = False
        return local

    def write_through(self, local: Any, index: Any, value: Any) -> bool:
        """Apply ``local[index] = value`` to a copy, if it is one element set to a
        float (a float array) or a bool (a bool array): writes numpy makes the same
        way everywhere and that cannot fail once the index fits. False if not applied."""
        numpy = self._np
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
        elif type(index) is tuple and all(type(k) is int for k in index):
            if len(index) != local.ndim:
                return False
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
