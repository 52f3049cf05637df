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
          <-----  REPLY, OUTPUT, REQUEST, NOTICE

Handshake frames carry JSON (the peer is not authenticated yet, so nothing more
powerful than ``json`` parses them); frames of an open session carry pickles
whose meaning belongs to the client and worker layers. :class:`Connection` holds
only the state and enforces the table below; it does no I/O.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from tether._errors import ProtocolError
from tether.wire._frames import Buffer, Frame, encode_frame

#: Bumped whenever a change makes old peers misunderstand new ones.
PROTOCOL_VERSION: Final = 1


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
    NOTICE = 23


class Flag(enum.IntFlag):
    NONE = 0
    SYNC = 1  # CALL: the client waits for a REPLY with the same seq
    ERROR = 2  # REPLY/RESPONSE: meta is an error, not a value
    DEFERRED = 4  # REPLY: the error belongs to an earlier pipelined call
    NOPIPE = 8  # REPLY: never pipeline calls of this kind (they touch client state)
    STDERR = 16  # OUTPUT: the text is for stderr
    BATCH = 32  # CALL: meta holds several pipelined calls (seq, seq + 1, ...)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"  # the acceptor during the handshake, then the worker


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


_FROM_CLIENT: Final = frozenset({Kind.CALL, Kind.RELEASE, Kind.RESUME, Kind.RESPONSE, Kind.BYE})
_FROM_SERVER: Final = frozenset({Kind.REPLY, Kind.OUTPUT, Kind.REQUEST, Kind.NOTICE})


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


def decode_handshake(frame: Frame) -> Handshake:
    """Parse a handshake frame; anything malformed raises ProtocolError."""
    cls = _HANDSHAKE_TYPES.get(Kind(frame.kind)) if frame.kind in Kind._value2member_map_ else None
    if cls is None:
        raise ProtocolError(f"expected a handshake frame, got kind {frame.kind}")
    if frame.buffers:
        raise ProtocolError("handshake frames carry no buffers")
    try:
        body = json.loads(frame.meta)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed handshake: {exc}") from exc
    if not isinstance(body, dict) or set(body) - set(cls.__dataclass_fields__):
        raise ProtocolError("malformed handshake: unexpected fields")
    try:
        return cls(**body)
    except TypeError as exc:
        raise ProtocolError(f"malformed handshake: {exc}") from exc


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
