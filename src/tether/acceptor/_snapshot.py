"""What the client answers from its read-only copies of small arrays (client/_replica.py):
the arrays' contents, and which numpy functions it may compute on a copy itself."""

from __future__ import annotations

import io
from typing import Any, Final

#: numpy functions whose result on a whole array of numbers is one value that does not
#: depend on the order of evaluation (no sum: its rounding depends on the CPU's SIMD
#: path), so a copy gives exactly what the worker would.
REDUCTIONS: Final = ("max", "min", "amax", "amin", "argmax", "argmin", "any", "all",
                     "count_nonzero")  # fmt: skip
#: Array kinds those functions are exact for: booleans, integers, floats.
EXACT_KINDS: Final = "biuf"


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
    return id(root)


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


def reduction_name(fn: Any) -> str | None:
    """``fn``'s name if it is one of numpy's :data:`REDUCTIONS`."""
    import numpy

    for name in REDUCTIONS:
        if getattr(numpy, name, None) is fn:
            return name
    return None


def reduce_or_copy(name: str, array: Any, limit: int) -> tuple[bool, Any]:
    """``(True, array_bytes(array))`` when the client can reduce a copy itself,
    else ``(False, numpy.<name>(array))`` computed here."""
    import numpy

    if (
        type(array) is numpy.ndarray
        and array.dtype.kind in EXACT_KINDS
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
