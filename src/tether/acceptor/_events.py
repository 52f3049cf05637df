"""What passes between the worker's protocol, its shell and its engine.

Events are what :meth:`tether.acceptor._protocol.WorkerProtocol.next_event`
makes of the client's frames: a call to execute, a release, the script's
rebinds, the answer to the worker's own request, the end of the session.
Outcomes are what the engine reports of a pipelined call, for the protocol to
act on (poison, fail, or tell the client its prediction was wrong).

Named tuples, not frozen dataclasses: one is built for every call on the hot
path, and a frozen dataclass takes 0.4 us more to build (about 2% of a null
call, more of a pipelined one). They are as immutable.
"""

from __future__ import annotations

import enum
from typing import Any, Final, NamedTuple

from tether.wire._ops import Shape


class Call(NamedTuple):
    """A call to execute. ``meta`` and ``buffers`` are still encoded: decoding
    resolves handles, which is the engine's."""

    seq: int
    sync: bool
    meta: bytes
    buffers: tuple[Any, ...]


class Batch(NamedTuple):
    """A batch of pipelined calls that may run straight through: ``entries`` in
    order (calls, numbered from ``seq``, with release and namespace entries among
    them, told apart by their first byte). The shell runs them; when one leaves
    the session FAILED, the rest go back to the protocol
    (:meth:`~tether.acceptor._protocol.WorkerProtocol.requeue`), which skips them."""

    seq: int
    entries: list[bytes]


class Release(NamedTuple):
    """Handles the client let go of."""

    hids: list[int]


class Names(NamedTuple):
    """The script's rebinds, a namespace entry of the call stream (encoded)."""

    meta: bytes


class Response(NamedTuple):
    """The client's answer to the worker's request ``rid`` (encoded)."""

    rid: int
    error: bool
    meta: bytes
    buffers: tuple[Any, ...]


class Closed(NamedTuple):
    """The client said BYE: the session ends."""


class NeedData(enum.Enum):
    NEED_DATA = "need data"


#: What ``next_event`` returns when it needs another frame.
NEED_DATA: Final = NeedData.NEED_DATA

Event = Call | Batch | Release | Names | Response | Closed


class Mispredicted(NamedTuple):
    """A pipelined call ran, but its result is not what the client assumed.
    ``poison``: the part of the shape whose proxies cannot be used (they fail
    with ``error``), if any."""

    why: str
    poison: Shape = None
    error: BaseException | None = None
    tid: int = 0  # the class of the result, where it is a handle of another type
    types: tuple[Any, ...] = ()  # descriptions of the types the client lacks (TypeDesc)


class CallFailed(NamedTuple):
    """A pipelined call raised ``error``; ``shape`` its result ids (None if it
    could not even be decoded)."""

    shape: Shape
    error: BaseException


#: What the engine reports of a pipelined call (None: ran and bound as assumed).
Outcome = Mispredicted | CallFailed | None
