"""The compact form of a plain answer: no pickle on either side.

Most synchronous calls a script waits for answer with one plain value:
``loss.item()`` a float, ``bool(x > 0)`` a bool, ``len(batch)`` an int,
``torch.is_grad_enabled()``, a ``repr`` a str. Pickling one costs the worker a
pickler (with its reference hooks) and a second pickle around it for the class
descriptions a reply may carry, and the client as much to read it back: several
microseconds of each round trip. Such an answer travels as::

    0x02    VALUE_TAG (a pickle starts with PROTO, 0x80; a compact call with 0x01)
    u8      kind: N None, T True, F False, i i64, d f64, s str (UTF-8, the rest)

little-endian; anything else (a handle, a container, an int past 64 bits, a
subclass of these types, a reply that carries class descriptions) goes as a
pickle. :func:`decode` reads nothing it has not bounds-checked and raises
:class:`~tether.ProtocolError` on anything malformed.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from tether._errors import ProtocolError

#: First byte of a compact answer.
VALUE_TAG: Final = b"\x02"
#: Characters of a str answered compactly, at most (longer ones are pickled).
MAX_STR: Final = 1 << 16

_I64: Final = struct.Struct("<q")
_F64: Final = struct.Struct("<d")
_NONE: Final = VALUE_TAG + b"N"
_TRUE: Final = VALUE_TAG + b"T"
_FALSE: Final = VALUE_TAG + b"F"
_INT: Final = VALUE_TAG + b"i"
_FLOAT: Final = VALUE_TAG + b"d"
_STR: Final = VALUE_TAG + b"s"
_MIN: Final = -(1 << 63)
_END: Final = 1 << 63


def encode(value: Any) -> bytes | None:
    """``value`` in the compact form, or None: pickle it."""
    t = type(value)
    if t is float:
        return _FLOAT + _F64.pack(value)
    if t is bool:
        return _TRUE if value else _FALSE
    if t is int:
        return _INT + _I64.pack(value) if _MIN <= value < _END else None
    if value is None:
        return _NONE
    if t is str and len(value) <= MAX_STR:
        text: str = value
        return _STR + text.encode("utf-8", "surrogatepass")
    return None


def decode(meta: bytes) -> Any:
    """The value of a compact answer (``meta`` starts with :data:`VALUE_TAG`)."""
    kind = meta[1:2]
    size = len(meta)
    if kind == b"d" and size == 10:
        return _F64.unpack_from(meta, 2)[0]
    if kind == b"i" and size == 10:
        return _I64.unpack_from(meta, 2)[0]
    if size == 2:
        if kind == b"T":
            return True
        if kind == b"F":
            return False
        if kind == b"N":
            return None
    if kind == b"s":
        try:
            return meta[2:].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ProtocolError("a compact answer with a malformed str") from None
    raise ProtocolError(f"malformed compact answer ({size} bytes, kind {kind!r})")
