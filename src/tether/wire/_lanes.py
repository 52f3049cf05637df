"""Lanes: compact calls of one fixed layout, written and read by one ``struct`` call each.

Theory of operation
-------------------
A script's hot loop makes the same calls again and again with new operands:
``a * 0.999``, ``x.add_(y)``, ``torch.relu(h)``, ``opt.step()``. In the compact
form (:mod:`tether.wire._compact`) such a call is a run of constant bytes (the
operation, the kind and type of its result, the item count, the function's name
or handle, the method's name, the operands' tags) with fixed-size holes: the
result's handle id, the target's handle id, and each operand, a handle id, an
i64 or an f64. That layout is a *lane*:

* The client's :func:`packer` turns one call into ``pack(hid, *variables)``,
  which writes any later call of the same layout as its batch entry (the meta
  behind its length, :func:`~tether.wire._ops.frame_entry`) with one ``struct``
  call: the very bytes that :meth:`~tether.wire._compact.CompactEncoder.encode`
  would write.
* The worker's :class:`LaneReader` knows a meta of a layout it has read before
  by its constant bytes and reads it with one ``struct`` call into what
  :func:`~tether.wire._compact.decode` would give, instead of walking the
  items. Only a meta that ``decode`` read whole makes a layout, and another
  meta uses it only if every byte outside its holes is the same.

* The worker's engine may also have each layout *run* a pipelined call in one
  generated function (a ``fuse`` given to the reader: acceptor/_fused.py).

Nothing on the wire says "lane": the bytes are ordinary compact calls, so each
side uses lanes or not on its own. Measured on this project's 2-core test
machine, for ``a * 0.999``: the client's general path 6.5 us a call, its lane
3.6 us (both including the proxy and the protocol); the worker's ``decode`` and
the engine's call record 1.5 us, the lane reader 0.9 us.

Code generation: each layout's ``pack`` and ``read`` are compiled from a
template with ``exec`` (as :mod:`dataclasses` builds ``__init__``): a loop over
the holes would cost more than the rest of the call. The generated source holds
only names and numbers that this module makes up; every value of the call is
bound by name, never written into the source.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from tether.wire._compact import (
    COMPACT_TAG,
    SHAPE_ANY,
    SHAPE_HANDLE,
    SHAPE_NONE,
    CompactEncoder,
    decode,
)
from tether.wire._ops import NONE, Handle, Op

__all__ = ["NOT_RUN", "Fuser", "LaneReader", "Packer", "RawHandle", "packer"]

#: ``pack(hid, *variables)``: the batch entry of one call of a lane (see :func:`packer`).
Packer = Callable[..., bytes]

_CALL: Final = int(Op.CALL)
_CALLMETHOD: Final = int(Op.CALLMETHOD)
_H, _I, _F = 0x68, 0x69, 0x66  # item tags: handle, i64, f64
_OPERAND_CODES: Final = {_H: "q", _I: "q", _F: "d"}
_LEN: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")
_MAX_VARIABLES: Final = 6
_MAX_LAYOUTS: Final = 4096
_new_tuple: Any = tuple.__new__
_UNKNOWN: Any = object()  # a layout key not seen yet


def _operand(x: Any, meta: type) -> tuple[int, str] | None:
    """The tag and ``struct`` code of a value with a fixed-size item."""
    t = type(x)
    if type(t) is meta:
        return _H, "q"
    if t is float:
        return _F, "d"
    if t is int:
        return _I, "q"
    return None


def packer(
    encoder: CompactEncoder,
    op: int,
    kind: int,
    tid: int,
    items: tuple[Any, ...],
    variable: tuple[bool, ...],
) -> Packer | None:
    """The packer of the lane of one call, or None if it has no fixed layout.

    ``items`` are the call's compact items (``(fn, *args)`` for CALL,
    ``(target, name, *args)`` for CALLMETHOD), ``variable`` says which of them
    change from call to call (each must be a handle, a float or an int: the
    caller keys its lanes by their classes) and the rest are the same in every
    call (the function, the method's name). ``kind`` is the result's shape
    kind (SHAPE_HANDLE of type ``tid``, SHAPE_NONE or SHAPE_ANY), no keywords.

    ``pack(hid, *values)`` takes the result's handle id (0 unless SHAPE_HANDLE)
    and the variable items in order, and raises :class:`struct.error` for an
    int past 64 bits.
    """
    if op not in (_CALL, _CALLMETHOD) or kind not in (SHAPE_ANY, SHAPE_NONE, SHAPE_HANDLE):
        return None
    if len(items) != len(variable) or len(items) > 255 or sum(variable) > _MAX_VARIABLES:
        return None
    meta_class = encoder.handle_meta
    if kind != SHAPE_HANDLE:
        tid = 0  # as the encoder writes it
    # Constant runs of bytes, each followed by a hole: (struct code, is a handle).
    consts = [COMPACT_TAG + bytes((op, kind))]
    holes = [("q", False)]  # the result's handle id
    current = bytearray(_I64.pack(tid) + bytes((len(items), 0)))
    for x, varies in zip(items, variable, strict=True):
        if varies:
            found = _operand(x, meta_class)
            if found is None:
                return None
            tag, code = found
            current.append(tag)
            consts.append(bytes(current))
            holes.append((code, tag == _H))
            current = bytearray()
        else:
            item = encoder.item_bytes(x)
            if item is None:
                return None
            current += item
    tail = bytes(current)
    size = sum(map(len, consts)) + len(tail) + 8 * len(holes)
    consts[0] = _LEN.pack(size) + consts[0]
    fmt = "<" + "".join(f"{len(c)}s{code}" for c, (code, _h) in zip(consts, holes, strict=True))
    fmt += f"{len(tail)}s" if tail else ""
    names = [f"x{i}" for i in range(len(holes) - 1)]
    fields = ["hid"]
    fields += (f"{n}._t_id" if h else n for n, (_c, h) in zip(names, holes[1:], strict=True))
    parts = [p for i, f in enumerate(fields) for p in (f"c{i}", f)]
    if tail:
        parts.append("tail")
    source = f"def pack(hid, {', '.join(names)}):\n    return _pack({', '.join(parts)})\n"
    scope: dict[str, Any] = {"_pack": struct.Struct(fmt).pack, "tail": tail}
    scope.update((f"c{i}", c) for i, c in enumerate(consts))
    exec(source, scope)  # names only: see the module docstring
    return scope["pack"]  # type: ignore[no-any-return]


#: ``fuse(op, shape, items, tags, fmt)``: a layout's runner, or None (see :class:`LaneReader`).
Fuser = Callable[[int, Any, list[Any], list[int], str], "Callable[[bytes], Any] | None"]

#: What :meth:`LaneReader.run` returns for a meta it has no runner for.
NOT_RUN: Final[Any] = object()


class LaneReader:
    """The worker's half of the lanes: ``read(meta, lookup)`` is what the
    engine would make of a compact call after :func:`decode` (``(op, shape,
    fn, args, kwargs)`` for CALL, ``(op, shape, target, name, args, kwargs)``
    for CALLMETHOD, handles resolved by ``lookup``), or None: a meta that is
    no lane's, which ``decode`` reads. Errors of ``lookup`` propagate, as from
    ``decode``; ``name`` resolves a function's name, as for ``decode``.

    A meta is taken for a lane's when it is a CALL or CALLMETHOD without
    keywords whose operands all sit at its end, 9 bytes each; the layout is
    found by all its bytes outside the holes (the key: the length and every
    tag are among them), made once from ``decode``'s reading of a whole meta,
    so a meta whose reading by ``decode`` would differ never matches one.

    With a ``fuse``, each layout may also get a *runner*: ``fuse(op, shape,
    items, tags, fmt)`` is given what the layout was learnt from (``decode``'s
    items, handles as :class:`RawHandle`; the operands' tags; the ``struct``
    format that reads the holes: the result's id, the target's for a method,
    the operands) and returns ``run(meta)`` or None. ``run(meta)`` is then
    what :meth:`run` returns for the layout's metas: the engine carries out the
    call in one function (acceptor/_fused.py), where ``read`` only reads it.
    """

    __slots__ = ("_fuse", "_layouts", "_name")

    def __init__(self, name: Callable[[bytes], Any], fuse: Fuser | None = None) -> None:
        self._name = name
        self._fuse = fuse
        # key -> the layout's (read, run or None), or None (no lane: decode reads it)
        self._layouts: dict[bytes, tuple[Callable[..., Any], Any] | None] = {}

    def _entry(self, meta: bytes) -> tuple[Callable[..., Any], Any] | None:
        """The layout of ``meta``: its ``(read, run)``, learnt on first sight, or None."""
        end = len(meta)
        if end < 22 or meta[0] != 1 or meta[20] != 0:  # the compact tag; no keywords
            return None
        op = meta[1]
        if op == _CALL:
            n = meta[19] - 1
            key = meta[1:3] + meta[11 : end - 9 * n + 1]
        elif op == _CALLMETHOD and meta[21] == _H:
            n = meta[19] - 2
            key = meta[1:3] + meta[11:22] + meta[30 : end - 9 * n + 1]
        else:
            return None
        if n > 1:  # the other operands' tags
            key += meta[end - 9 * n + 9 : end : 9]
        entry = self._layouts.get(key, _UNKNOWN)
        if entry is _UNKNOWN:
            entry = self._learn(meta, key, op, n)
        return entry  # type: ignore[no-any-return]

    def read(self, meta: bytes, lookup: Callable[[int], Any]) -> tuple[Any, ...] | None:
        entry = self._entry(meta)
        if entry is None:
            return None
        return entry[0](meta, lookup)  # type: ignore[no-any-return]

    def run(self, meta: bytes) -> Any:
        """What the layout's runner makes of ``meta``, or :data:`NOT_RUN`."""
        entry = self._entry(meta)
        if entry is None or entry[1] is None:
            return NOT_RUN
        return entry[1](meta)

    def _learn(
        self, meta: bytes, key: bytes, op: int, n: int
    ) -> tuple[Callable[..., Any], Any] | None:
        first = len(meta) - 9 * n
        if (
            not 0 <= n <= _MAX_VARIABLES
            or first < 22
            or any(meta[first + 9 * i] not in _OPERAND_CODES for i in range(n))
        ):
            # Not a lane's (a slice or a string among the last items): nothing is
            # remembered, since its key may hold the bytes that vary from call to call.
            return None
        if len(self._layouts) >= _MAX_LAYOUTS:
            self._layouts.clear()
        layout = self._layout(meta, op, n)
        self._layouts[key] = layout
        return layout

    def _layout(self, meta: bytes, op: int, n: int) -> tuple[Callable[..., Any], Any] | None:
        """The ``(read, run)`` of ``meta``'s layout, or None; :meth:`_learn` has
        checked ``n`` and that the last ``n`` items' places hold operand tags."""
        end = len(meta)
        kind = meta[2]
        if kind not in (SHAPE_ANY, SHAPE_NONE, SHAPE_HANDLE):
            return None
        first = end - 9 * n  # where the operands start
        tags = [meta[first + 9 * i] for i in range(n)]
        _op, shape, items, kwargs = decode(meta, RawHandle, self._name)
        head = 1 if op == _CALL else 2
        if kwargs or len(items) != head + n:
            return None
        # Each operand decode read is a handle, an int or a float, 9 bytes each,
        # and decode read up to the end: so they are the last 9 * n bytes, and
        # the tags read above are theirs when the classes agree with them.
        for item, tag in zip(items[head:], tags, strict=True):
            if type(item) is not _OPERAND_TYPES[tag]:
                return None  # decode read something else at that place
        # The holes, by offset: the result's id, the target's, the operands.
        holes = [(3, "q")]
        if op == _CALLMETHOD:
            if type(items[0]) is not RawHandle or type(items[1]) is not str:
                return None
            holes.append((22, "q"))
        holes += [(first + 9 * i + 1, _OPERAND_CODES[t]) for i, t in enumerate(tags)]
        fmt, pos = "<", 0
        for offset, code in holes:
            fmt += f"{offset - pos}x{code}" if offset > pos else code
            pos = offset + 8
        fmt += f"{end - pos}x" if end > pos else ""
        read = _compile(op, kind, shape, items, tags, fmt)
        run = self._fuse(op, shape, items, tags, fmt) if self._fuse is not None else None
        return read, run


class RawHandle(int):
    """A handle id as a layout is learned: told apart from an int operand."""


_OPERAND_TYPES: Final = {_H: RawHandle, _I: int, _F: float}


def _compile(
    op: int, kind: int, shape: Any, items: list[Any], tags: list[int], fmt: str
) -> Callable[..., Any]:
    """``read(meta, lookup)`` for one layout (see the module docstring)."""
    scope: dict[str, Any] = {
        "_unpack": struct.Struct(fmt).unpack,
        "_handle": _new_tuple,
        "Handle": Handle,
        "NONE": NONE,
    }
    names = ["hid"]
    if kind == SHAPE_HANDLE:
        scope["TID"] = shape.tid
        shape_src = "_handle(Handle, (hid, TID))"
    else:
        shape_src = "NONE" if kind == SHAPE_NONE else "None"
    args = []
    for i, tag in enumerate(tags):
        names.append(f"v{i}")
        args.append(f"lookup(v{i})" if tag == _H else f"v{i}")
    args_src = f"({', '.join(args)},)" if args else "()"
    if op == _CALL:
        fn = items[0]
        if type(fn) is RawHandle:
            scope["FH"] = int(fn)
            fn_src = "lookup(FH)"
        else:
            scope["FN"] = fn
            fn_src = "FN"
        body = f"({op}, {shape_src}, {fn_src}, {args_src}, {{}})"
    else:
        names.insert(1, "t")
        scope["NAME"] = items[1]
        body = f"({op}, {shape_src}, lookup(t), NAME, {args_src}, {{}})"
    source = (
        f"def read(meta, lookup):\n    {', '.join(names)}, = _unpack(meta)\n    return {body}\n"
    )
    exec(source, scope)  # names only: see the module docstring
    return scope["read"]  # type: ignore[no-any-return]
