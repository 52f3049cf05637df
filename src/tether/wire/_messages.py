"""Message kinds, flags and the handshake, and the per-role rules of who may send what.

Theory of operation
-------------------
A session's connection goes through three states::

    client                        acceptor / worker
    ------                        -----------------
    HELLO  -------------------->  (acceptor checks version and token)
           <--------------------  REFUSED            -> CLOSED
           <--------------------  WELCOME (worker)   -> OPEN
    OPEN: CALL, RELEASE, RESUME, RESPONSE, BYE  ----->
          <-----  REPLY, OUTPUT, WARNING, REQUEST, NOTICE
          <---->  BEAT (either side, after a quiet spell; see _liveness.py)

Handshake frames carry JSON (the peer is not authenticated yet, so nothing more
powerful than ``json`` parses them); frames of an open session carry pickles
whose meaning belongs to the client and worker layers, except WARNING, whose
JSON body is defined and validated here (:class:`RemoteWarning`).
:class:`Connection` holds only the state and enforces the table below; it does
no I/O.
"""

from __future__ import annotations

import enum
import json
import pickle
from dataclasses import dataclass, field
from typing import Any, Final

from tether._errors import ProtocolError
from tether.wire._frames import Buffer, Frame, encode_frame

#: Bumped whenever a change makes old peers misunderstand new ones.
#: 2: Kind.WARNING. 3: the client's array copies call the worker's
#: acceptor/_snapshot.read_or_copy and reduce_or_copy, which older workers lack;
#: a mirrored tuple goes back to the worker as ``_refs.tuple_of``. 4: the client has
#: arrays of plain data built by acceptor/_snapshot.build, under memory keys it names,
#: names a class it has no handle of as ``_refs.type_id``, and writes slices, tuples
#: and Ellipsis in compact calls (wire/_compact's ``S``, ``t``, ``E``).
PROTOCOL_VERSION: Final = 4

#: A NOTICE with a sequence number is ``pickle((tag, text))`` about that pipelined
#: call: "mispredicted" (its result is of another class or structure than the
#: client assumed), "none" (it returned None where an object was assumed; the
#: whole meta is NONE_NOTICE) or "touched" (it ran as assumed but used the client:
#: it asked for a name, a file or an object's state, or warned; TOUCHED_NOTICE).
#: A client that knows only the first reading stops pipelining the site on any.
RETURNED_NONE: Final = "the call returned None"
NONE_NOTICE: Final = pickle.dumps(("none", RETURNED_NONE), protocol=5)
TOUCHED_NOTICE: Final = pickle.dumps(
    ("touched", "the call uses the client's files or objects"), protocol=5
)


class Kind(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSED = 3
    # client -> worker
    CALL = 10
    RELEASE = 11
    RESUME = 12
    RESPONSE = 13
    BYE = 14
    # worker -> client
    REPLY = 20
    OUTPUT = 21
    REQUEST = 22
    NOTICE = 23  # a pipelined call's result was not as predicted (see TOUCHED_NOTICE)
    WARNING = 24  # a warning issued in the worker, for the client's warnings machinery
    # either way, once both ends said so in the handshake ("liveness" in the infos)
    BEAT = 30  # "still here": sent only after a quiet spell; carries nothing


class Flag(enum.IntFlag):
    NONE = 0
    SYNC = 1  # CALL: the client waits for a REPLY with the same seq
    ERROR = 2  # REPLY/RESPONSE: meta is an error, not a value
    DEFERRED = 4  # REPLY: the error belongs to an earlier pipelined call
    NOPIPE = 8  # REPLY: never pipeline calls of this kind (they touch client state)
    STDERR = 16  # OUTPUT: the text is for stderr
    BATCH = 32  # CALL: meta holds several pipelined calls (seq, seq + 1, ...)
    NESTED = 64  # CALL: made while the worker waits for a RESPONSE; run it at once
    EXHAUSTED = 128  # REPLY to NEXT: the iterator has ended (no payload)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"  # the acceptor during the handshake, then the worker


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


_FROM_CLIENT: Final = frozenset(
    {Kind.CALL, Kind.RELEASE, Kind.RESUME, Kind.RESPONSE, Kind.BYE, Kind.BEAT}
)
_FROM_SERVER: Final = frozenset(
    {Kind.REPLY, Kind.OUTPUT, Kind.WARNING, Kind.REQUEST, Kind.NOTICE, Kind.BEAT}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """The client's first frame: who it is and what it wants."""

    protocol: int
    token: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, int) or isinstance(self.protocol, bool):
            raise ProtocolError("hello.protocol must be an integer")
        if not isinstance(self.token, str) or len(self.token) > 4096:
            raise ProtocolError("hello.token must be a string of at most 4096 characters")
        if not isinstance(self.info, dict):
            raise ProtocolError("hello.info must be an object")


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """The worker's first frame: the session is open."""

    protocol: int
    session: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, int) or not isinstance(self.session, str):
            raise ProtocolError("welcome needs an integer protocol and a string session")
        if not isinstance(self.info, dict):
            raise ProtocolError("welcome.info must be an object")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The acceptor's answer to a hello it will not serve."""

    reason: str
    code: str

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not isinstance(self.code, str):
            raise ProtocolError("refused needs a string reason and code")


Handshake = Hello | Welcome | Refused
_HANDSHAKE_TYPES: Final[dict[Kind, type[Hello] | type[Welcome] | type[Refused]]] = {
    Kind.HELLO: Hello,
    Kind.WELCOME: Welcome,
    Kind.REFUSED: Refused,
}


def encode_handshake(msg: Handshake) -> list[Buffer]:
    kind = next(k for k, t in _HANDSHAKE_TYPES.items() if isinstance(msg, t))
    body = {name: getattr(msg, name) for name in msg.__dataclass_fields__}
    return encode_frame(kind, 0, 0, json.dumps(body).encode())


#: No handshake needs deeper JSON; everything later walks it recursively.
MAX_HANDSHAKE_DEPTH: Final = 16


def _depth(value: object) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            todo.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def decode_handshake(frame: Frame) -> Handshake:
    """Parse a handshake frame; anything malformed raises ProtocolError."""
    cls = _HANDSHAKE_TYPES.get(Kind(frame.kind)) if frame.kind in Kind._value2member_map_ else None
    if cls is None:
        raise ProtocolError(f"expected a handshake frame, got kind {frame.kind}")
    if frame.buffers:
        raise ProtocolError("handshake frames carry no buffers")
    try:
        body = json.loads(frame.meta)
        # A lone surrogate ("\\ud800" is valid JSON) cannot be encoded again:
        # refuse it here rather than let a token comparison raise later.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError) as exc:
        raise ProtocolError(f"malformed handshake: {exc}") from exc
    except RecursionError:
        raise ProtocolError("malformed handshake: nested too deeply") from None
    if _depth(body) > MAX_HANDSHAKE_DEPTH:
        raise ProtocolError(f"malformed handshake: nested deeper than {MAX_HANDSHAKE_DEPTH}")
    if not isinstance(body, dict) or set(body) - set(cls.__dataclass_fields__):
        raise ProtocolError("malformed handshake: unexpected fields")
    try:
        return cls(**body)
    except TypeError as exc:
        raise ProtocolError(f"malformed handshake: {exc}") from exc


_MAX_LINEAGE: Final = 64
_MAX_NAME: Final = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWarning:
    """A warning issued in the worker (the body of a WARNING frame).

    The worker lets every warning through its own filters and sends it here, in
    its place among the OUTPUT frames; the client re-issues it with
    ``warnings.warn_explicit`` so that the script's filters decide. ``category``
    is the class's lineage, (module, qualname) from the class up to
    BaseException, as for exceptions. An empty ``filename`` means the warning
    was attributed to Tether's own frames (``stacklevel`` pointing at the
    caller of the remoted function): the client attributes it to the script's
    line instead. ``line`` is the source line, when the worker could read it.
    """

    category: tuple[tuple[str, str], ...]
    message: str
    filename: str
    lineno: int
    module: str
    line: str | None = None

    def __post_init__(self) -> None:
        lineage = self.category
        if (
            not isinstance(lineage, tuple)
            or not 0 < len(lineage) <= _MAX_LINEAGE
            or not all(
                isinstance(pair, tuple)
                and len(pair) == 2
                and all(isinstance(n, str) and 0 < len(n) <= _MAX_NAME for n in pair)
                for pair in lineage
            )
        ):
            raise ProtocolError("warning.category must be a lineage of (module, qualname) pairs")
        if not isinstance(self.message, str):
            raise ProtocolError("warning.message must be a string")
        if not isinstance(self.filename, str) or not isinstance(self.module, str):
            raise ProtocolError("warning.filename and warning.module must be strings")
        lineno = self.lineno
        if not isinstance(lineno, int) or isinstance(lineno, bool) or not 0 <= lineno < 2**31:
            raise ProtocolError("warning.lineno must be an integer in [0, 2**31)")
        if self.line is not None and not isinstance(self.line, str):
            raise ProtocolError("warning.line must be a string or null")


def encode_beat() -> list[Buffer]:
    """The BEAT frame: a header and nothing else (16 bytes)."""
    return encode_frame(Kind.BEAT, 0, 0, b"")


def check_beat(frame: Frame) -> None:
    """A BEAT carries nothing: flags, seq, meta and buffers are all empty.

    Raises ProtocolError otherwise (a BEAT is never a place to hide data).
    """
    if frame.flags or frame.seq or frame.meta or frame.buffers:
        raise ProtocolError("a BEAT frame carries no flags, seq, meta or buffers")


def encode_warning(warning: RemoteWarning) -> bytes:
    """The meta of a WARNING frame."""
    body = {name: getattr(warning, name) for name in warning.__dataclass_fields__}
    return json.dumps(body).encode()  # ASCII: json escapes everything else


def decode_warning(meta: bytes) -> RemoteWarning:
    """Parse a WARNING frame's meta; anything malformed raises ProtocolError."""
    try:
        body = json.loads(meta)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"malformed warning: {exc!r}") from exc
    if not isinstance(body, dict) or set(body) - set(RemoteWarning.__dataclass_fields__):
        raise ProtocolError("malformed warning: unexpected fields")
    lineage = body.get("category")
    if isinstance(lineage, list):
        body["category"] = tuple(tuple(p) if isinstance(p, list) else p for p in lineage)
    try:
        return RemoteWarning(**body)
    except TypeError as exc:
        raise ProtocolError(f"malformed warning: {exc}") from exc


#: Who may send what in each state (the table in the module docstring).
_ALLOWED: Final[dict[tuple[State, Role], frozenset[int]]] = {
    (State.HANDSHAKE, Role.CLIENT): frozenset({Kind.HELLO}),
    (State.HANDSHAKE, Role.SERVER): frozenset({Kind.WELCOME, Kind.REFUSED}),
    (State.OPEN, Role.CLIENT): _FROM_CLIENT,
    (State.OPEN, Role.SERVER): _FROM_SERVER,
    (State.CLOSED, Role.CLIENT): frozenset(),
    (State.CLOSED, Role.SERVER): frozenset(),
}
#: The frames that change the state, and the state they lead to.
_TRANSITIONS: Final[dict[int, State]] = {
    Kind.WELCOME: State.OPEN,
    Kind.REFUSED: State.CLOSED,
    Kind.BYE: State.CLOSED,
}


class Connection:
    """The protocol state of one end of a session; no I/O.

    ``check_incoming(frame)`` validates a received frame against the state and
    the role and returns it (advancing the state on handshake frames);
    ``check_outgoing(kind)`` does the same for a frame about to be sent. Both
    raise ProtocolError on a violation.
    """

    __slots__ = ("_in", "_out", "role", "state")

    def __init__(self, role: Role, state: State = State.HANDSHAKE) -> None:
        self.role = role
        self._enter(state)

    def _enter(self, state: State) -> None:
        self.state = state
        peer = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
        self._out = _ALLOWED[state, self.role]
        self._in = _ALLOWED[state, peer]

    def _advance(self, kind: int) -> None:
        nxt = _TRANSITIONS.get(kind)
        if nxt is not None:
            self._enter(nxt)

    def check_incoming(self, frame: Frame) -> Frame:
        if frame.kind not in self._in:
            sender = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
            raise ProtocolError(
                f"unexpected frame kind {frame.kind} from the {sender.value} "
                f"in state {self.state.value}"
            )
        self._advance(frame.kind)
        return frame

    def check_outgoing(self, kind: int) -> None:
        if kind not in self._out:
            raise ProtocolError(
                f"cannot send frame kind {kind} as {self.role.value} in state {self.state.value}"
            )
        self._advance(kind)
