"""The compact form of a common call: no pickle on either side.

Most calls a script makes are small and plain: a remote function or method
applied to remote objects and numbers (``a * 0.999``, ``opt.step()``,
``x.add_(1.0)``). Pickling such a call costs about 2 us on the client and as
much again to unpickle it in the worker, most of it pickle's own machinery
rather than the bytes. These calls travel in a fixed binary form instead
(little-endian throughout)::

    0x01                  COMPACT_TAG (a pickle starts with PROTO, 0x80)
    u8   op               CALL, CALLMETHOD, GETATTR or NEXT
    u8   shape kind       0 sync (ANY), 1 NONE, 2 DISCARD, 3 one handle
    i64  handle id        of the result, for shape kind 3 (else 0)
    i64  type id          of the result, for shape kind 3 (else 0)
    u8   n_items
    u8   n_kwargs
    n_items  x item
    n_kwargs x (u16 length, UTF-8 name, item)

An item is a tag byte and its payload: ``N`` None, ``T`` True, ``F`` False,
``E`` Ellipsis, ``i`` i64, ``f`` f64, ``h`` a handle id (i64), ``g`` a
module-level function as ``u16 length + "module:qualname"``, ``s`` a str (u32
length + UTF-8), ``b`` bytes (u32 length + raw), ``S`` a slice (three items,
none a slice, tuple or list), ``t`` a tuple and ``l`` a list (u8 count, then
items, none a tuple or list). They are indexing and the lists a step passes:
``data[i:i + 8]`` with ``i`` a remote scalar, ``x[:, 0]``, ``x[..., :k]``,
``torch.stack([a, b])``. The items are the call's fields, flattened: ``CALL
fn(*args, **kwargs)`` is ``(fn, *args)``; ``CALLMETHOD`` is ``(target, name,
*args)``; ``GETATTR`` and ``NEXT`` are their fields. Anything else (dicts and
other containers, nested tuples and lists, big ints, code, files, buffers,
nested result shapes) goes as a pickle.

Both halves live here: :class:`CompactEncoder` (the client's) and
:func:`decode` (the worker's). The encoder knows remote objects only as
instances of a class whose metaclass it is given, with the handle id at
``_t_id`` (the client's proxies), so this module imports nothing above ``wire``.

The decoder reads nothing it has not bounds-checked, allocates nothing larger
than the frame, and raises :class:`~tether.ProtocolError` on anything malformed.
"""

from __future__ import annotations

import struct
import types
from collections.abc import Callable
from typing import Any, Final

from tether._errors import ProtocolError
from tether.wire._ops import DISCARD, NONE, Handle, Op, Shape

#: First byte of a compact call.
COMPACT_TAG: Final = b"\x01"
HEADER: Final = struct.Struct("<BBqqBB")
MAX_ITEMS: Final = 255

#: Operations that have a compact form, and how many leading items are not
#: positional arguments (the rest are, for CALL and CALLMETHOD).
HEAD: Final = {int(Op.CALL): 1, int(Op.CALLMETHOD): 2, int(Op.GETATTR): 2, int(Op.NEXT): 1}
_FIXED: Final = frozenset({int(Op.GETATTR), int(Op.NEXT)})  # no arguments at all

#: Shape kinds (the header's second byte).
SHAPE_ANY, SHAPE_NONE, SHAPE_DISCARD, SHAPE_HANDLE = 0, 1, 2, 3
SHAPE_KIND: Final = {None: SHAPE_ANY, NONE: SHAPE_NONE, DISCARD: SHAPE_DISCARD}

_I64: Final = struct.Struct("<q")
_F64: Final = struct.Struct("<d")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
I64_MIN: Final = -(1 << 63)
I64_MAX: Final = (1 << 63) - 1

_structs: dict[str, struct.Struct] = {}


def pack(fmt: str, values: list[Any]) -> bytes:
    """``COMPACT_TAG`` and ``values`` packed by ``fmt`` (a format the encoder
    built piece by piece: ``HEADER`` then per item its tag ``c`` and payload)."""
    s = _structs.get(fmt)
    if s is None:
        if len(_structs) > 4096:
            _structs.clear()
        s = _structs[fmt] = struct.Struct(fmt)
    return COMPACT_TAG + s.pack(*values)


_BUILTIN_FUNCTION = types.BuiltinFunctionType
_SEQUENCES: Final = (tuple, list)  # (one holds slices, never a tuple or list)
_new_tuple: Any = tuple.__new__
_CALL = int(Op.CALL)
_CALLMETHOD = int(Op.CALLMETHOD)


class CompactEncoder:
    """Writes calls in the compact form, or says that one needs pickle.

    ``handle_meta`` is the metaclass of the client's proxies: an item whose
    class is an instance of it is a handle, its id at ``_t_id``. (Compared by
    identity on the hot path: a call per item would cost more than the rest.)
    """

    __slots__ = ("_lists", "_meta", "_names")

    def __init__(self, handle_meta: type) -> None:
        self._meta = handle_meta
        #: Module-level builtin function -> (format piece, values) of its
        #: compact item, or () if it has none.
        self._names: dict[Any, tuple[Any, ...]] = {}
        self._lists = 0  # lists the call being encoded passes (see _shares_a_list)

    def encode(self, op: int, shape: Shape, fields: tuple[Any, ...]) -> bytes | None:
        """The compact meta of a plain call, or None if it needs pickle."""
        if op == _CALL:
            fn, args, kwargs = fields
            items: tuple[Any, ...] = (fn, *args)
        elif op == _CALLMETHOD:
            target, name, args, kwargs = fields
            items = (target, name, *args)
        elif op in HEAD:
            items, kwargs = fields, None
        else:
            return None
        if type(shape) is Handle:
            kind, hid, tid = SHAPE_HANDLE, shape.hid, shape.tid
        elif shape is None or shape is NONE or shape is DISCARD:
            kind, hid, tid = SHAPE_KIND[shape], 0, 0
        else:
            return None  # a list or tuple of handles
        n_kwargs = len(kwargs) if kwargs else 0
        if len(items) > MAX_ITEMS or n_kwargs > MAX_ITEMS:
            return None
        meta = self._meta
        self._lists = 0
        fmt = ["<BBqqBB"]
        values: list[Any] = [int(op), kind, hid, tid, len(items), n_kwargs]
        for x in items:
            t = type(x)
            if type(t) is meta:  # the common items inline: a call per item costs
                fmt.append("cq")
                values += (b"h", x._t_id)
            elif t is float:
                fmt.append("cd")
                values += (b"f", x)
            elif not self._put(x, fmt, values):
                return None
        if n_kwargs:
            for k, x in kwargs.items():
                key = k.encode("utf-8", "surrogatepass")
                if len(key) > 0xFFFF:
                    return None
                fmt.append(f"H{len(key)}s")
                values += (len(key), key)
                if not self._put(x, fmt, values):
                    return None
        if self._lists > 1 and _shares_a_list(items, kwargs):
            return None  # f(xs, xs): pickle gives the worker one list, as the script has
        return pack("".join(fmt), values)

    @property
    def handle_meta(self) -> type:
        """The metaclass of the classes whose instances are handles."""
        return self._meta

    def item_bytes(self, x: Any) -> bytes | None:
        """One item in the compact form (tag and payload), or None if it has none."""
        fmt: list[str] = ["<"]
        values: list[Any] = []
        if not self._put(x, fmt, values):
            return None
        return struct.pack("".join(fmt), *values)

    def _put(self, x: Any, fmt: list[str], values: list[Any]) -> bool:
        """Append one item's format and values; False if it has no compact form."""
        t = type(x)
        if t is float:
            fmt.append("cd")
            values += (b"f", x)
        elif type(t) is self._meta:
            fmt.append("cq")
            values += (b"h", x._t_id)
        elif t is int:
            if not I64_MIN <= x <= I64_MAX:
                return False
            fmt.append("cq")
            values += (b"i", x)
        elif t is str:
            b = x.encode("utf-8", "surrogatepass")
            fmt.append(f"cI{len(b)}s")
            values += (b"s", len(b), b)
        elif t is _BUILTIN_FUNCTION:
            named = self._names.get(x)
            if named is None:
                named = self._names[x] = _builtin_name(x)
            if not named:
                return False
            fmt.append(named[0])
            values += named[1]
        elif x is None:
            fmt.append("c")
            values.append(b"N")
        elif t is bool:
            fmt.append("c")
            values.append(b"T" if x else b"F")
        elif t is bytes:
            fmt.append(f"cI{len(x)}s")
            values += (b"b", len(x), x)
        elif t is slice:
            fmt.append("c")
            values.append(b"S")
            for part in (x.start, x.stop, x.step):
                if type(part) is slice or type(part) in _SEQUENCES:
                    return False
                if not self._put(part, fmt, values):
                    return False
        elif t is tuple or t is list:
            if len(x) > MAX_ITEMS:
                return False
            fmt.append("cB")
            if t is tuple:
                values += (b"t", len(x))
            else:
                values += (b"l", len(x))
                self._lists += 1
            for part in x:
                if type(part) in _SEQUENCES or not self._put(part, fmt, values):
                    return False
        elif x is Ellipsis:
            fmt.append("c")
            values.append(b"E")
        else:
            return False
        return True


def _shares_a_list(items: tuple[Any, ...], kwargs: dict[str, Any] | None) -> bool:
    """True if one list is passed twice (each is written whole: the worker would get two)."""
    lists = [id(x) for x in (*items, *(kwargs or {}).values()) if type(x) is list]
    return len(set(lists)) < len(lists)


def _builtin_name(fn: Any) -> tuple[Any, ...]:
    """The compact item of a builtin that lives at module level (``g`` and
    ``module:qualname``), else ()."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, types.ModuleType):
        qualname = getattr(fn, "__qualname__", "")
        if qualname and "." not in qualname and getattr(owner, qualname, None) is fn:
            name = f"{owner.__name__}:{qualname}".encode()
            return (f"cH{len(name)}s", (b"g", len(name), name))
    return ()


def decode(
    meta: bytes, ref: Callable[[int], Any], name: Callable[[bytes], Any]
) -> tuple[int, Shape, list[Any], dict[str, Any] | None]:
    """Decode a compact meta into ``(op, shape, items, kwargs)``, the items
    resolved: ``ref(hid)`` for a handle, ``name(raw)`` for a function name
    (its UTF-8 bytes: the resolver caches by them, and decodes only once).

    ProtocolError if it is malformed; errors of the resolvers propagate.
    """
    end = len(meta)
    if end < 1 + HEADER.size:
        raise ProtocolError("truncated compact call")
    op, kind, hid, tid, n_items, n_kwargs = HEADER.unpack_from(meta, 1)
    head = HEAD.get(op)
    if head is None:
        raise ProtocolError(f"compact call with an unknown operation {op}")
    if n_items < head or (op in _FIXED and (n_items != head or n_kwargs)):
        raise ProtocolError("compact call with the wrong number of items")
    shape: Shape
    if kind == SHAPE_HANDLE:
        shape = _new_tuple(Handle, (hid, tid))  # Handle(hid, tid), at C speed
    elif kind == SHAPE_ANY:
        shape = None
    elif kind == SHAPE_NONE:
        shape = NONE
    elif kind == SHAPE_DISCARD:
        shape = DISCARD
    else:
        raise ProtocolError(f"compact call with an unknown result shape {kind}")
    pos = 1 + HEADER.size
    items = []
    for _ in range(n_items):
        # Handles, floats and names inline: they are most items of most calls.
        tag = meta[pos] if pos < end else -1
        if (tag == 0x68 or tag == 0x66) and pos + 9 <= end:  # h, f
            if tag == 0x68:
                items.append(ref(_I64.unpack_from(meta, pos + 1)[0]))
            else:
                items.append(_F64.unpack_from(meta, pos + 1)[0])
            pos += 9
        elif tag == 0x67 and pos + 3 <= end:  # g
            (n,) = _U16.unpack_from(meta, pos + 1)
            pos += 3
            if pos + n > end:
                raise ProtocolError("compact call with an item past its end")
            items.append(name(meta[pos : pos + n]))
            pos += n
        else:
            value, pos = _item(meta, pos, end, ref, name)
            items.append(value)
    kwargs: dict[str, Any] | None = None
    if n_kwargs:
        kwargs = {}
        for _ in range(n_kwargs):
            key, pos = _text(meta, pos, end, _U16)
            kwargs[key], pos = _item(meta, pos, end, ref, name)
    if pos != end:
        raise ProtocolError("compact call with trailing bytes")
    return op, shape, items, kwargs


#: Where an item is: anywhere, inside a tuple or list, inside a slice (what each may hold).
_TOP, _IN_TUPLE, _IN_SLICE = 0, 1, 2


def _item(
    meta: bytes,
    pos: int,
    end: int,
    ref: Callable[[int], Any],
    name: Callable[[bytes], Any],
    where: int = _TOP,
) -> tuple[Any, int]:
    if pos >= end:
        raise ProtocolError("truncated compact call")
    tag = meta[pos]
    pos += 1
    if tag == 0x66:  # f
        if pos + 8 > end:
            raise ProtocolError("truncated compact call")
        return _F64.unpack_from(meta, pos)[0], pos + 8
    if tag == 0x68 or tag == 0x69:  # h, i
        if pos + 8 > end:
            raise ProtocolError("truncated compact call")
        v = _I64.unpack_from(meta, pos)[0]
        return (ref(v) if tag == 0x68 else v), pos + 8
    if tag == 0x67:  # g
        n, pos = _length(meta, pos, end, _U16)
        return name(meta[pos : pos + n]), pos + n
    if tag == 0x73:  # s
        return _text(meta, pos, end, _U32)
    if tag == 0x62:  # b
        n, pos = _length(meta, pos, end, _U32)
        return bytes(meta[pos : pos + n]), pos + n
    if tag == 0x4E:  # N
        return None, pos
    if tag == 0x54:  # T
        return True, pos
    if tag == 0x46:  # F
        return False, pos
    if tag == 0x45:  # E
        return Ellipsis, pos
    if tag == 0x53 and where != _IN_SLICE:  # S
        start, pos = _item(meta, pos, end, ref, name, _IN_SLICE)
        stop, pos = _item(meta, pos, end, ref, name, _IN_SLICE)
        step, pos = _item(meta, pos, end, ref, name, _IN_SLICE)
        return slice(start, stop, step), pos
    if (tag == 0x74 or tag == 0x6C) and where == _TOP:  # t, l
        if pos >= end:
            raise ProtocolError("truncated compact call")
        n = meta[pos]
        pos += 1
        parts = []
        for _ in range(n):
            part, pos = _item(meta, pos, end, ref, name, _IN_TUPLE)
            parts.append(part)
        return (tuple(parts) if tag == 0x74 else parts), pos
    if tag == 0x53 or tag == 0x74 or tag == 0x6C:
        raise ProtocolError("compact call with a slice, tuple or list nested where none may be")
    raise ProtocolError(f"compact call with an unknown item tag {tag}")


def _length(meta: bytes, pos: int, end: int, size: struct.Struct) -> tuple[int, int]:
    if pos + size.size > end:
        raise ProtocolError("truncated compact call")
    (n,) = size.unpack_from(meta, pos)
    pos += size.size
    if pos + n > end:
        raise ProtocolError("compact call with an item past its end")
    return n, pos


def _text(meta: bytes, pos: int, end: int, size: struct.Struct) -> tuple[str, int]:
    n, pos = _length(meta, pos, end, size)
    try:
        return meta[pos : pos + n].decode("utf-8", "surrogatepass"), pos + n
    except UnicodeDecodeError:
        raise ProtocolError("compact call with malformed text") from None


def peek_shape(meta: bytes) -> Shape:
    """The result shape of a compact call, resolving nothing (for calls skipped
    after an error); None if it cannot be read."""
    try:
        return decode(meta, lambda hid: None, lambda text: None)[1]
    except ProtocolError:
        return None
