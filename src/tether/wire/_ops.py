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
``NEXT``                iterator                                        item, or :data:`STOP`
``MAKECLASS``           name, bases, namespace, keywords                the new class
``PING``                (none)                                          None
======================  ==============================================  =========

(``length`` is the exact number of items left, or None when unknown; ``items``
is every item, or None, for iterators whose items cannot change under the loop.)

``shape`` says what the client already assumed about the result when it did
not wait for it (a pipelined call): :data:`ANY` means "send it back" (the call
is synchronous); otherwise a :data:`Shape` names the handle ids the client
allocated for the result's parts, so the worker can bind them without a reply.
"""

from __future__ import annotations

import array
import enum
import struct
from typing import Final, NamedTuple


class Op(enum.IntEnum):
    IMPORT = 1
    GETATTR = 2
    CALL = 3
    CALLMETHOD = 4
    ITER = 5
    NEXT = 6
    MAKECLASS = 7
    PING = 8


#: Shape of a synchronous call: the worker sends the result back.
ANY: Final = None
#: Shape of a call expected to return None.
NONE: Final = "N"
#: Shape of a call whose result nobody will ever use (``__exit__`` on success).
DISCARD: Final = "D"
#: A shape is ANY, NONE, ("H", handle_id, type_id), or ("L" | "T", (shape, ...)).
Shape = None | str | tuple

#: Marker the worker returns from NEXT when the iterator is exhausted.
STOP: Final = "__tether_stop__"


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
    from tether._errors import ProtocolError

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
#: it, page it in again". Applied in stream order, even while the engine skips
#: calls after an error; takes no sequence number.
NAMESPACE_TAG: Final = b"\x03"


def pack_batch(metas: list[bytes]) -> bytes:
    """Several entries in one frame, each prefixed by its length: calls' metas,
    numbered from the frame's sequence number on, and release entries
    (:data:`RELEASE_TAG`), which take no number."""
    return b"".join(_LEN.pack(len(m)) + m for m in metas)


def unpack_batch(meta: bytes) -> list[bytes]:
    """Split a batch; ProtocolError if the lengths do not add up."""
    from tether._errors import ProtocolError

    out = []
    pos, end = 0, len(meta)
    view = memoryview(meta)
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError("truncated call batch")
        (n,) = _LEN.unpack_from(meta, pos)
        pos += 4
        if pos + n > end:
            raise ProtocolError("a call in a batch runs past its frame")
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out
