"""A remote array's contents for the client's read-only copy (client/_replica.py)."""

from __future__ import annotations

import io
from typing import Any


def array_bytes(array: Any, limit: int) -> bytes | None:
    """``array`` in numpy's ``.npy`` format, if it is an ndarray of numbers,
    booleans or strings of at most ``limit`` bytes; else None."""
    import numpy

    if type(array) is not numpy.ndarray or array.dtype.kind not in "biufcUS":
        return None
    if array.nbytes > limit or array.ndim == 0:
        return None
    out = io.BytesIO()
    numpy.save(out, array, allow_pickle=False)
    return out.getvalue()
