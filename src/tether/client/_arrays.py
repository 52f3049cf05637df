"""Operators on remote numpy arrays, and what each one leaves alone.

With ``--remote numpy`` and a numpy on the client, scripts index, compare and update
small arrays in Python loops. Each such operator still goes to the worker, but most
of them are known to change no other array and to draw nothing from numpy's global
generator, since numpy runs no Python code for arrays of numbers. Saying so when the
call is sent (:meth:`Remoting.quietly`) keeps the client's local copies good
(``client/_replica.py``) and numpy's generator checked out (``client/_draws.py``):

* an index of plain numbers, slices, ``None`` and ``...`` (a view: changes nothing);
* arithmetic and comparisons of arrays whose kind a copy told and plain numbers
  (a new array: changes nothing; exact ones are also made on the copies);
* ``a[i] = v`` and ``a += v`` (changes ``a``'s memory only: copies of other memory
  stay good, and one float written into a float array is written into its copy).
"""

from __future__ import annotations

import numbers
import operator
from typing import TYPE_CHECKING, Any, Final

from tether.client._draws import MISS
from tether.client._exact import EXACT_OPERATORS
from tether.client._proxy import BINARY_OPERATORS, INPLACE_OPERATORS, RemoteType

if TYPE_CHECKING:
    from tether.client._remoting import Remoting
    from tether.client._replica import Replicas

_GETITEM: Final = operator.getitem
_MISS: Final = MISS
_PLAIN_KEYS: Final = (int, type(None), type(Ellipsis))
_MAKES: Final = "makes"
_WRITES: Final = "writes"
#: Operators that numpy answers for arrays of numbers without running Python code:
#: those that make a new array, and those that write to their first operand.
_ARRAY_OPS: Final[dict[Any, str]] = {
    **dict.fromkeys(BINARY_OPERATORS.values(), _MAKES),
    **dict.fromkeys(
        (operator.neg, operator.pos, abs, operator.invert, operator.lt, operator.le,
         operator.gt, operator.ge, operator.eq, operator.ne),
        _MAKES,
    ),
    **dict.fromkeys(INPLACE_OPERATORS.values(), _WRITES),
}  # fmt: skip


def plain_index(key: Any) -> bool:
    """True for an index that makes numpy run no code of anyone's: ints, slices
    of ints, ``None``, ``...``, numpy's numbers, and tuples of those."""
    if type(key) is tuple:
        return all(plain_index(k) for k in key)
    if type(key) is slice:
        return all(type(k) in _PLAIN_KEYS for k in (key.start, key.stop, key.step))
    return type(key) in _PLAIN_KEYS or type(key).__module__ == "numpy"


def plain_value(value: Any) -> bool:
    """True for a number, or a numpy number of the client's."""
    t = type(value)
    return t in (int, float, bool, complex) or t.__module__ == "numpy"


#: ``ndarray.__array_ufunc__`` methods that make new arrays (not ``at``, which writes).
_UFUNC_METHODS: Final = frozenset({"__call__", "reduce", "accumulate", "reduceat", "outer"})
_PLAIN_KWARGS: Final = (int, float, bool, str, type(None))


class ArrayOps:
    """One session's operators on remote arrays (see the module docstring)."""

    def __init__(self, session: Remoting, replicas: Replicas) -> None:
        import numpy  # (the client has one: there are no copies without)

        self._s = session
        self._r = replicas
        self._integer = numpy.integer
        self._float64 = numpy.float64
        self._np = numpy
        self._ufunc = numpy.ufunc

    def known(self, obj: Any) -> bool:
        """True for a remote ndarray whose kind a copy told (numbers, not objects)."""
        return self._s.is_ndarray(obj) and self._r.known(obj) is not None

    def apply(self, fn: Any, args: tuple[Any, ...]) -> Any:
        """``fn(*args)``: an operator with a remote operand."""
        s = self._s
        if fn is _GETITEM:
            # (x[i] of a good 1-D copy never gets here: the ndarray mirror's own
            # __getitem__ reads it first, Replicas.specialize)
            index = args[1]
            if type(index).__module__ == "numpy" and isinstance(index, numbers.Integral):
                index = int(index)  # q[s][a] with an action drawn by numpy: the same read
            if (type(index) is int or type(index) is tuple) and s.is_ndarray(args[0]):
                return self._r.read(args[0], index)
            if plain_index(index) and s.is_ndarray(args[0]):
                with s.quietly():  # a view or a copy: nothing changes
                    return s.apply_remote(fn, *args)
            return s.apply_remote(fn, *args)
        how = _ARRAY_OPS.get(fn)
        if how is None or not all(plain_value(a) or self.known(a) for a in args):
            return s.apply_remote(fn, *args)
        if how is _MAKES:
            with s.quietly():  # a new array: nothing changes
                result = s.apply_remote(fn, *args)
                if fn in EXACT_OPERATORS and s.is_ndarray(result):
                    self._r.made(result, fn, args)  # q1[s] + q2[s]: its copy made here
            return result
        known = self._r.known(args[0])
        with s.quietly(rng_only=True):  # q[s] += v: it changes q[s]'s memory only
            before = s.epoch
            result = s.apply_remote(fn, *args)
            if known is not None and known[1] is not None:
                self._r.wrote(known[1], before, s.epoch)
        if known is not None and result is not args[0] and s.is_ndarray(result):
            # w += u * x rebinds w to a pipelined result: numpy's in-place operators
            # return their operand, so it is the same array, of the same kind.
            self._r.same_array(result, known)
        return result

    def leaves_alone(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """True if remote function ``fn(*args, **kwargs)`` is one of numpy's that
        change nothing and draw nothing (``acceptor/_snapshot.pure_kind``: ``np.dot``,
        ``np.where``, a ufunc, numpy's dispatch of a ufunc to a remote operand) given
        these arguments: numbers, the client's arrays of numbers, remote arrays whose
        kind a copy told (not objects, whose methods a ufunc would run), and no
        ``out``. Asks the worker once per function."""
        if "out" in kwargs or not args:
            return False
        if not all(type(v) in _PLAIN_KWARGS or self._numeric(v) for v in kwargs.values()):
            return False
        # (The arguments first: the worker is asked about a function only for calls
        # that could qualify, never for the helpers this asking calls.)
        if len(args) >= 3 and type(args[2]) is str:
            # ndarray.__array_ufunc__(self, ufunc, method, *inputs): numpy's own ufunc
            # (the client's, when its numpy dispatches ``1 - y`` to a remote y)
            return (
                args[2] in _UFUNC_METHODS
                and self._own_ufunc(args[1])
                and self.known(args[0])
                and all(self._numeric(a) for a in args[3:])
                and self._r.asked("pure_kind", fn) == "array_ufunc"
            )
        if not all(self._numeric(a) for a in args):
            return False
        kind: str | None = self._r.asked("pure_kind", fn)
        return kind == "pure" or kind == "ufunc"

    def writes_own(
        self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, writer: bool = False
    ) -> Any:
        """``fn(*args, **kwargs)`` when it writes into arrays of the client's own
        numpy (``np.copyto(X, y)``, ``np.put(X, i, v)``, ``np.add.at(X, i, 1)``,
        ``np.add(a, b, out=X)``), which travel by value: the worker writes into
        its copies and sends back what they hold, and the client writes that into
        its arrays, so the script sees its own array changed, as locally (an
        ``out`` that numpy returns is the script's array again). :data:`MISS` for
        any other call. Asks the worker once per function whether it writes its
        first argument (``acceptor/_snapshot.pure_kind``), unless ``writer`` says."""
        out: Any = kwargs.get("out")
        places: list[tuple[str, int]] = []
        if out is not None:
            if self._own(out):
                places.append(("o", -1))
            elif type(out) is tuple:
                places += [("o", i) for i, o in enumerate(out) if self._own(o)]
        if args and self._own(args[0]) and (writer or self._r.asked("pure_kind", fn) == "writes"):
            places.append(("a", 0))
        if not places:
            return _MISS
        call_writing = self._r.helpers().call_writing
        result, written = call_writing(fn, args, kwargs, places)
        for (where, i), (dtype, shape, raw) in zip(places, written, strict=True):
            target = args[i] if where == "a" else out if i < 0 else out[i]
            target[...] = self._np.frombuffer(raw, dtype=dtype).reshape(shape)
        if type(result) is str and result == "out":
            return out  # numpy returns the script's own out array
        return result

    def at_writes_own(self, ufunc: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``ufunc.at(X, ...)`` of a remote ufunc, with ``X`` the script's own array:
        as :meth:`writes_own` (``np.add.at(counts, labels, 1)``); else :data:`MISS`."""
        if not (args and self._own(args[0])):
            return _MISS
        # (every ufunc's at writes into its first argument: nothing to ask)
        return self.writes_own(self._s.getattr(ufunc, "at"), args, kwargs, writer=True)

    def _own(self, value: Any) -> bool:
        """An array of the client's own numpy holding numbers, booleans or strings."""
        return type(value) is self._np.ndarray and value.dtype.kind in "biufcUS"

    def _own_ufunc(self, ufunc: Any) -> bool:
        """True for one of numpy's own ufuncs, the worker's or the client's (not one
        that ``frompyfunc`` made of Python code)."""
        if type(type(ufunc)) is RemoteType:
            kind: str | None = self._r.asked("pure_kind", ufunc)
            return kind == "ufunc"
        return type(ufunc) is self._ufunc and getattr(self._np, ufunc.__name__, None) is ufunc

    def _numeric(self, value: Any, depth: int = 0) -> bool:
        """A number, the client's array of numbers, a remote array whose kind a copy
        told, or a short list or tuple of those."""
        t = type(value)
        if type(t) is RemoteType:
            return self.known(value)
        if t is list or t is tuple:
            return (
                depth < 2 and len(value) <= 64 and all(self._numeric(v, depth + 1) for v in value)
            )
        if t in (int, float, bool):
            return True
        return (
            t.__module__ == "numpy"
            and getattr(getattr(value, "dtype", None), "kind", "O") in "biufc"
        )

    def setitem(self, target: Any, index: Any, value: Any) -> bool:
        """Send ``target[index] = value`` if it is an array write that changes only
        ``target``'s memory and draws nothing; False (nothing sent) if it is not."""
        s = self._s
        if not (
            s.is_ndarray(target)
            and plain_index(index)
            and (plain_value(value) or self.known(value))
        ):
            return False
        known = self._r.known(target)
        # The same write in the forms that travel without pickle: q[s][a] = v with an
        # action drawn by numpy and a value computed from a copy.
        if isinstance(index, self._integer):
            index = int(index)
        if type(value) is self._float64 and known is not None and known[0] == "f":
            value = float(value)  # (into an array of floats: the same number stored)
        with s.quietly(rng_only=True):
            before = s.epoch
            s.apply_none_remote(operator.setitem, target, index, value)
            if known is not None and known[1] is not None:
                self._r.wrote(known[1], before, s.epoch, target, index, value)
        return True
