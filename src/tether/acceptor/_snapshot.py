"""What the client answers from its read-only copies of small arrays (client/_replica.py):
the arrays' contents, which numpy functions it may compute on a copy itself, and the
arrays it builds from plain data as this worker builds them."""

from __future__ import annotations

import io
import weakref
from typing import Any, Final

#: numpy functions whose result on a whole array of numbers is one value that does not
#: depend on the order of evaluation (no sum: its rounding depends on the CPU's SIMD
#: path), so a copy gives exactly what the worker would.
REDUCTIONS: Final = ("max", "min", "amax", "amin", "argmax", "argmin", "any", "all",
                     "count_nonzero")  # fmt: skip
#: Array kinds those functions are exact for: booleans, integers, floats.
EXACT_KINDS: Final = "biuf"
#: numpy functions exact only on 64-bit integer arrays (wrapping addition and
#: multiplication give the same bits in any order; a float sum's rounding does not).
INT_REDUCTIONS: Final = ("sum", "prod")
#: numpy functions exact on booleans and on integers whose sum stays below 2**53 (numpy
#: sums them as float64: every partial sum is then an integer held exactly, in any
#: order, and the one division rounds alike everywhere): ``np.mean(y == c)``.
COUNT_REDUCTIONS: Final = ("mean",)
#: numpy functions that build a new array from plain data (numbers, lists of them, a
#: shape): the client builds its copy itself and has the worker :func:`build` it.
CONSTRUCTORS: Final = ("array", "asarray", "zeros", "ones", "arange", "take", "where")
#: numpy functions that build a new array from one array the client has a copy of.
COPIERS: Final = ("zeros_like", "ones_like", "copy")

#: numpy functions that change nothing, for arrays of numbers and given no ``out``:
#: each makes a new array, a view or a number of its arguments (and runs no Python
#: code of anyone's), so the client's copies of other arrays stay good across them.
PURE: Final = (
    "dot", "vdot", "inner", "outer", "matmul", "tensordot", "einsum", "where", "sum",
    "mean", "std", "var", "average", "median", "percentile", "quantile", "prod", "cumsum",
    "cumprod", "diff", "max", "min", "amax", "amin", "argmax", "argmin", "argsort", "sort",
    "unique", "bincount", "histogram", "digitize", "searchsorted", "count_nonzero", "any",
    "all", "nonzero", "flatnonzero", "argwhere", "clip", "round", "around", "concatenate",
    "stack", "vstack", "hstack", "column_stack", "array", "asarray", "zeros", "ones",
    "full", "empty", "zeros_like", "ones_like", "full_like", "arange", "linspace", "eye",
    "identity", "diag", "trace", "reshape", "transpose", "ravel", "squeeze",
    "expand_dims", "atleast_1d", "atleast_2d", "swapaxes", "flip", "roll", "tile",
    "repeat", "take", "copy", "cov", "corrcoef", "array_equal", "allclose", "isclose",
)  # fmt: skip
#: Functions of numpy.linalg that change nothing the same way.
PURE_LINALG: Final = ("norm", "inv", "pinv", "det", "solve", "eig", "eigh", "svd", "qr",
                      "cholesky", "lstsq", "matrix_rank")  # fmt: skip

#: numpy functions that write into their first argument (and return None).
WRITERS: Final = ("copyto", "put", "place", "putmask", "fill_diagonal")

#: Memory the client named when it had it built: id of the array -> (the array, weakly;
#: the client's key). Looked up by :func:`memory_root`.
_NAMED: dict[int, tuple[weakref.ref[Any], int]] = {}


def memory_root(array: Any) -> int | None:
    """A key for the memory ``array`` lives in: the same for every array that can see
    a write to it (views share the array that owns their data), None when that cannot
    be known (memory numpy does not own: a buffer, a file mapped twice)."""
    import numpy

    root = array
    while isinstance(root.base, numpy.ndarray):
        root = root.base
    if root.base is not None or not root.flags.owndata:
        return None
    named = _NAMED.get(id(root))
    if named is not None and named[0]() is root:
        return named[1]
    return id(root)


def build(name: str, key: int, *args: Any) -> Any:
    """``numpy.<name>(*args)`` for one of :data:`CONSTRUCTORS` or :data:`COPIERS` (and
    ``args[0].copy()`` for ``ndarray.copy``), its memory named ``key``
    (negative: never an id) so that the client, which built its copy of it without
    asking, knows which writes it can see."""
    import numpy

    if name == "ndarray.copy":
        array = args[0].copy()
    elif name in CONSTRUCTORS or name in COPIERS:
        array = getattr(numpy, name)(*args)
    else:
        raise ValueError(f"build makes numpy's constructors, not {name!r}")
    aid = id(array)

    def forget(ref: weakref.ref[Any]) -> None:
        if _NAMED.get(aid, (None,))[0] is ref:
            del _NAMED[aid]

    _NAMED[aid] = (weakref.ref(array, forget), key)
    return array


def default_int() -> str:
    """The dtype numpy gives a list of Python ints here (``<i8`` on 64-bit Linux and
    macOS, ``<i4`` on Windows before numpy 2): the client builds int arrays only
    when its own numpy gives the same."""
    import numpy

    return numpy.array([0]).dtype.str


def array_bytes(array: Any, limit: int, only_1d: bool = False) -> tuple[bytes, int | None] | None:
    """``array`` in numpy's ``.npy`` format, and its :func:`memory_root`, if it is an
    ndarray of numbers, booleans or strings of at most ``limit`` bytes (and
    one-dimensional, with ``only_1d``); else None."""
    import numpy

    if type(array) is not numpy.ndarray or array.dtype.kind not in "biufcUS":
        return None
    if array.nbytes > limit or array.ndim == 0 or (only_1d and array.ndim != 1):
        return None
    out = io.BytesIO()
    numpy.save(out, array, allow_pickle=False)
    return out.getvalue(), memory_root(array)


def numpy_name(fn: Any) -> str | None:
    """``fn``'s name if it is one of numpy's :data:`REDUCTIONS`, :data:`INT_REDUCTIONS`,
    :data:`COUNT_REDUCTIONS`, :data:`CONSTRUCTORS` or :data:`COPIERS`."""
    import numpy

    for name in REDUCTIONS + INT_REDUCTIONS + COUNT_REDUCTIONS + CONSTRUCTORS + COPIERS:
        if getattr(numpy, name, None) is fn:
            return name
    return None


def pure_kind(fn: Any) -> str | None:
    """What the client may take ``fn`` for when it calls it on arrays of numbers
    with no ``out``: ``"pure"`` (one of :data:`PURE` or :data:`PURE_LINALG`),
    ``"ufunc"`` (one of numpy's own ufuncs, not one ``frompyfunc`` made of Python
    code), ``"array_ufunc"`` (``ndarray.__array_ufunc__``, which numpy calls for a
    ufunc when an operand is the client's), ``"writes"`` (it writes into its first
    argument: one of :data:`WRITERS`, a ufunc's ``at``), or None: it may change
    anything."""
    import numpy

    if isinstance(getattr(fn, "__self__", None), numpy.ufunc) and fn.__name__ == "at":
        return "writes"
    for name in WRITERS:
        if getattr(numpy, name, None) is fn:
            return "writes"
    if isinstance(fn, numpy.ufunc):
        return "ufunc" if getattr(numpy, fn.__name__, None) is fn else None
    if fn is numpy.ndarray.__array_ufunc__:
        return "array_ufunc"
    for name in PURE:
        if getattr(numpy, name, None) is fn:
            return "pure"
    for name in PURE_LINALG:
        if getattr(numpy.linalg, name, None) is fn:
            return "pure"
    return None


def exact_for(name: str, array: Any) -> bool:
    """True if reduction ``name`` of ``array`` gives the same on every machine (as
    client/_exact.Exact.reducible)."""
    dtype = array.dtype
    if name in INT_REDUCTIONS:
        return bool(dtype.kind in "iu" and dtype.itemsize == 8)
    if name in COUNT_REDUCTIONS:
        return counts_exactly(array)
    return bool(dtype.kind in EXACT_KINDS)


def counts_exactly(array: Any) -> bool:
    """True for booleans, and integers whose float64 sum is exact in any order."""
    kind = array.dtype.kind
    if kind == "b":
        return True
    if kind not in "iu" or not array.size:
        return False
    big = max(abs(int(array.max())), abs(int(array.min())))
    return bool(big * array.size < 1 << 53)


def reduce_or_copy(name: str, array: Any, limit: int) -> tuple[bool, Any]:
    """``(True, array_bytes(array))`` when the client can reduce a copy itself,
    else ``(False, numpy.<name>(array))`` computed here."""
    import numpy

    if (
        type(array) is numpy.ndarray
        and exact_for(name, array)
        and array.size
        and array.nbytes <= limit
    ):
        copied = array_bytes(array, limit)
        if copied is not None:
            return True, copied
    return False, getattr(numpy, name)(array)


def read_or_copy(array: Any, index: Any, limit: int) -> tuple[int, Any]:
    """``array[index]`` for the client, with the array itself when it is small:
    ``(1, array_bytes(array))`` if the array is at most ``limit`` bytes (the client
    reads its copy), else ``(0, array[index])`` if that is one element, else
    ``(2, ndim)``: a sub-array, which the client asks for as usual."""
    import numpy

    if type(array) is numpy.ndarray and array.nbytes <= limit:
        copied = array_bytes(array, limit)
        if copied is not None:
            return 1, copied
    arity = len(index) if type(index) is tuple else 1
    if type(array) is not numpy.ndarray or arity != array.ndim:
        return 2, getattr(array, "ndim", None)
    return 0, array[index]


#: Where :func:`call_writing` finds an array the client lent by value: a positional
#: argument (``("a", i)``), ``out`` itself (``("o", -1)``) or an item of an ``out``
#: tuple (``("o", i)``).
Place = tuple[str, int]
#: An array's contents as plain data: dtype string, shape, bytes.
Contents = tuple[str, tuple[int, ...], bytes]


def call_writing(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], places: list[Place]
) -> tuple[Any, list[Contents]]:
    """``fn(*args, **kwargs)`` where the arrays at ``places`` are copies of the
    client's own, which ``fn`` writes into (``np.copyto(X, y)``, ``out=X``):
    its result, ``"out"`` when that is ``out`` itself (a ufunc's), and what
    the copies hold after it, for the client to write into its arrays."""
    result = fn(*args, **kwargs)
    out: Any = kwargs.get("out")
    arrays = [args[i] if where == "a" else out if i < 0 else out[i] for where, i in places]
    if out is not None and (
        result is out
        or (
            type(out) is tuple
            and type(result) is tuple
            and len(result) == len(out)
            and all(r is o for r, o in zip(result, out, strict=True))
        )
    ):
        result = "out"
    return result, [(a.dtype.str, a.shape, a.tobytes()) for a in arrays]
