"""The vocabulary of an open session: operations, result shapes, type descriptors.

A CALL frame's meta is a pickle of ``(op, shape, *fields)``:

======================  ==============================================  =========
op                      fields                                          result
======================  ==============================================  =========
``IMPORT``              module name                                     module
``GETATTR``             target, name                                    attribute
``CALL``                callable, args, kwargs                          result
``CALLMETHOD``          target, method name, args, kwargs               result
``ITER``                target                                          (iterator, length, items)
``NEXT``                iterator                                        item, or :data:`EXHAUSTED`
``MAKECLASS``           name, bases, namespace, keywords                the new class
``PING``                (none)                                          None
======================  ==============================================  =========

(``length`` is the exact number of items left, or None when unknown; ``items``
is every item, or None, for iterators whose items cannot change under the loop.)

``shape`` says what the client already assumed about the result when it did
not wait for it (a pipelined call): :data:`ANY` means "send it back" (the call
is synchronous); otherwise a :data:`Shape` (:class:`Handle`, :class:`Items`,
:data:`NONE` or :data:`DISCARD`) names the handle ids the client allocated
for the result's parts, so the worker can bind them without a reply.
"""

from __future__ import annotations

import array
import enum
import struct
from typing import Final, NamedTuple

from tether._errors import ProtocolError


class Op(enum.IntEnum):
    IMPORT = 1
    GETATTR = 2
    CALL = 3
    CALLMETHOD = 4
    ITER = 5
    NEXT = 6
    MAKECLASS = 7
    PING = 8


class Returns(enum.Enum):
    """Shapes of pipelined calls whose result binds no handle."""

    NONE = "N"  # expected to return None
    DISCARD = "D"  # nobody will ever use the result (``__exit__`` on success)


#: Shape of a synchronous call: the worker sends the result back.
ANY: Final = None
#: Shape of a call expected to return None.
NONE: Final = Returns.NONE
#: Shape of a call whose result nobody will ever use (``__exit__`` on success).
DISCARD: Final = Returns.DISCARD


# The shapes are NamedTuples, not dataclasses: one is built for every pipelined
# call on both ends, and a frozen dataclass costs about twice as much to make.
class Handle(NamedTuple):
    """The result is one remote object: the worker binds it to ``hid`` and
    checks that its class is still the type ``tid``."""

    hid: int
    tid: int


class Items(NamedTuple):
    """The result is a small list (``is_list``) or tuple of remote objects."""

    is_list: bool
    parts: tuple[Shape, ...]


#: What the client assumed about a result it did not wait for.
Shape = Handle | Items | Returns | None


class Exhausted:
    """The value a NEXT call gives back when its iterator has ended.

    On the wire it is a REPLY with the EXHAUSTED flag and no payload, so no
    value an iterator yields can be mistaken for the end.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "EXHAUSTED"

    def __reduce__(self) -> str:
        return "EXHAUSTED"


#: The end of a remote iteration (see :class:`Exhausted`).
EXHAUSTED: Final = Exhausted()

_MAX_DEPTH = 16


def shape_to_wire(shape: Shape) -> object:
    """``shape`` in the form a pickled call carries: None, ``"N"``, ``"D"``,
    ``("H", hid, tid)`` or ``("L" | "T", (shape, ...))`` (plain builtins, so
    that the worker's unpickler imports nothing to read it)."""
    if shape is None:
        return None
    if type(shape) is Handle:
        return ("H", shape.hid, shape.tid)
    if type(shape) is Items:
        return ("L" if shape.is_list else "T", tuple(shape_to_wire(s) for s in shape.parts))
    return shape.value  # type: ignore[union-attr]


def shape_from_wire(raw: object, depth: int = 0) -> Shape:
    """The shape a pickled call carries; ProtocolError if it is none."""
    if raw is None:
        return None
    if raw == "N" or raw == "D":
        return Returns(raw)
    if type(raw) is tuple and len(raw) == 3 and raw[0] == "H":
        hid, tid = raw[1], raw[2]
        if type(hid) is int and type(tid) is int:
            return Handle(hid, tid)
    elif (
        type(raw) is tuple
        and len(raw) == 2
        and raw[0] in ("L", "T")
        and type(raw[1]) is tuple
        and depth < _MAX_DEPTH
    ):
        parts = tuple(shape_from_wire(s, depth + 1) for s in raw[1])
        return Items(raw[0] == "L", parts)
    raise ProtocolError(f"malformed result shape {raw!r:.80}")


def shape_handles(shape: Shape) -> list[int]:
    """The handle ids ``shape`` names, in order."""
    if type(shape) is Handle:
        return [shape.hid]
    if type(shape) is Items:
        return [hid for s in shape.parts for hid in shape_handles(s)]
    return []


class TypeDesc(NamedTuple):
    """What the client needs to know about a remote class to mirror it."""

    tid: int
    module: str
    qualname: str
    name: str
    bases: tuple[int, ...]  # type ids of the direct bases
    dunders: frozenset[str]  # special methods the class supports
    methods: frozenset[str]  # names of plain methods (routines) along the MRO


def pack_ids(ids: list[int]) -> bytes:
    """Encode handle ids for a RELEASE frame."""
    return array.array("q", ids).tobytes()


def unpack_ids(meta: bytes) -> list[int]:
    """Decode a RELEASE frame; ProtocolError if it is not a list of ids."""
    if len(meta) % 8:
        raise ProtocolError("a release frame must be a list of 64-bit ids")
    arr = array.array("q")
    arr.frombytes(meta)
    return arr.tolist()


_LEN = struct.Struct("<I")


#: First byte of a batch entry that is not a call but handles the client let go
#: of at that point of the stream (the ids follow, as in a RELEASE frame). Calls
#: start with a pickle's PROTO (0x80) or the compact tag (0x01).
RELEASE_TAG: Final = b"\x02"

#: First byte of a batch entry (or a lone CALL frame's meta) that carries the
#: script's rebinds of names the worker holds: a pickle of
#: ``[(module, [(name, value pickle or None), ...]), ...]``, None meaning "forget
#: it, page it in again". Applied in stream order, even while the worker skips
#: calls after an error; takes no sequence number.
NAMESPACE_TAG: Final = b"\x03"


#: Bytes in front of each entry of a batch: its length (u32).
ENTRY_HEAD: Final = _LEN.size


def frame_entry(meta: bytes) -> bytes:
    """One entry of a batch: ``meta`` behind its length."""
    return _LEN.pack(len(meta)) + meta


def pack_batch(metas: list[bytes]) -> bytes:
    """Several entries in one frame, each prefixed by its length: calls' metas,
    numbered from the frame's sequence number on, and release entries
    (:data:`RELEASE_TAG`), which take no number."""
    return b"".join(map(frame_entry, metas))


def unpack_batch(meta: bytes) -> list[bytes]:
    """Split a batch; ProtocolError if the lengths do not add up."""
    out = []
    pos, end = 0, len(meta)
    whole = meta if type(meta) is bytes else bytes(meta)  # one copy, then slices
    unpack = _LEN.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError("truncated call batch")
        (n,) = unpack(whole, pos)
        pos += 4
        if pos + n > end:
            raise ProtocolError("a call in a batch runs past its frame")
        out.append(whole[pos : pos + n])
        pos += n
    return out
