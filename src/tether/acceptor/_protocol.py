"""The worker's half of an open session, sans I/O.

Theory of operation
-------------------
:class:`WorkerProtocol` decides what the client's frames mean to the worker and
which frames the worker sends; it never touches a socket, a thread or the
session's objects. The shell (:mod:`tether.acceptor._shell`) moves frames in and
bytes out, and hands the calls to the :class:`~tether.acceptor._engine.Engine`:

* **Frames in.** :meth:`~WorkerProtocol.receive_frame` (or
  :meth:`~WorkerProtocol.receive_data`, bytes through the protocol's own
  decoder) queues a frame; :meth:`~WorkerProtocol.next_event` interprets the
  next piece of it, in stream order, as an event of :mod:`._events`:
  :class:`Call`, :class:`Release`, :class:`Names`, :class:`Response`,
  :class:`Closed`, or :data:`NEED_DATA`. A batch's entries are interpreted one
  at a time, each when the one before it has run, because a failure changes
  what the next one means. RESUME, a stale RESPONSE and BEAT need nothing
  from the shell.
* **Deferred errors.** When a pipelined call fails
  (:meth:`~WorkerProtocol.pipelined` with a :class:`CallFailed`) the session
  enters FAILED: the protocol keeps the error and poisons the call's result
  ids. In FAILED no call reaches the shell: a pipelined one is skipped, its
  result ids poisoned with the same error (its shape read without running
  anything); a synchronous one is answered with the error, flagged DEFERRED.
  The client raises it where the script can catch it and sends RESUME, which
  reopens the session. Calls that use a poisoned handle fail with the
  original error (the engine reads :attr:`~WorkerProtocol.poisoned`); a
  release forgets the poison with the handle.
* **Requests.** While a call runs, the engine may need the client (a module's
  source, a file, a global): :meth:`~WorkerProtocol.request` numbers a REQUEST
  and opens a *wait*. Until the RESPONSE with that number arrives,
  ``next_event`` gives only the calls flagged NESTED (the client's code,
  serving the request, called back into the worker: they run now, or both
  sides would wait for each other) and that RESPONSE; every other frame is
  set aside and interpreted, in order, once no wait is open, before any frame
  that arrives later. The entries of a batch interrupted by a wait resume
  after it. A wait may open inside a nested call's wait, innermost first. A
  wait whose asker raised before the answer came is closed by
  :meth:`~WorkerProtocol.abandon` (its late answer is then dropped).
* **Bytes out.** Replies, notices, requests and the queued output are encoded
  as they are decided and wait in the protocol until
  :meth:`~WorkerProtocol.data_to_send`. The script's output
  (:meth:`~WorkerProtocol.write_output`, :meth:`~WorkerProtocol.write_warning`)
  is queued and goes out, consecutive writes to one stream merged, before
  every REPLY and REQUEST and when the shell is about to wait
  (:meth:`~WorkerProtocol.flush_output`).
* **Touching the client.** A call that makes a request or warns is said to
  have used the client (the script must see the effect when the call returns,
  so the client waits for the next call of its site): its REPLY is flagged
  NOPIPE, or, pipelined, it gets a NOTICE of its own (``TOUCHED_NOTICE``).

States (:data:`TRANSITIONS`): OPEN, FAILED (a deferred error is pending) and
CLOSED (the client said BYE). Nothing leaves CLOSED.

The module runs over 400 lines: it is one state machine, which reads best whole,
and this account of it.
"""

from __future__ import annotations

import enum
import io
import pickle
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from tether._errors import ProtocolError
from tether.acceptor._codec import error_payload
from tether.acceptor._events import (
    NEED_DATA,
    Batch,
    Call,
    CallFailed,
    Closed,
    Event,
    Mispredicted,
    Names,
    NeedData,
    Outcome,
    Release,
    Response,
)
from tether.wire import Flag, Frame, FrameDecoder, Kind
from tether.wire import _compact as compact
from tether.wire._frames import Buffer, encode_frame
from tether.wire._messages import NONE_NOTICE, RETURNED_NONE, TOUCHED_NOTICE, Connection, Role
from tether.wire._messages import State as WireState
from tether.wire._ops import (
    NAMESPACE_TAG,
    RELEASE_TAG,
    Shape,
    shape_from_wire,
    shape_handles,
    unpack_batch,
    unpack_ids,
)

_SYNC = int(Flag.SYNC)  # plain ints on the hot path: enum arithmetic is slow
_BATCH = int(Flag.BATCH)
_NESTED = int(Flag.NESTED)
_CALL = int(Kind.CALL)
_REPLY = int(Kind.REPLY)
_RESPONSE = int(Kind.RESPONSE)
_NOPIPE = int(Flag.NOPIPE)
_COMPACT = compact.COMPACT_TAG
_new_tuple: Any = tuple.__new__


class State(enum.Enum):
    OPEN = "open"
    FAILED = "failed"  # a pipelined call failed: calls are skipped until RESUME
    CLOSED = "closed"


class Input(enum.Enum):
    FAIL = "fail"  # a pipelined call raised
    RESUME = "resume"  # the client raised the deferred error
    CLOSE = "close"  # BYE


#: The session's states as data: (state, input) -> next state.
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (State.OPEN, Input.FAIL): State.FAILED,
    (State.OPEN, Input.RESUME): State.OPEN,
    (State.OPEN, Input.CLOSE): State.CLOSED,
    # A nested call may fail while the call that waits for the client runs on
    # in FAILED; the later error is the one reported.
    (State.FAILED, Input.FAIL): State.FAILED,
    (State.FAILED, Input.RESUME): State.OPEN,
    (State.FAILED, Input.CLOSE): State.CLOSED,
    (State.CLOSED, Input.FAIL): State.CLOSED,
    (State.CLOSED, Input.RESUME): State.CLOSED,
    (State.CLOSED, Input.CLOSE): State.CLOSED,
}

# A pending entry of a batch: a pipelined call (handed out unless the session
# has FAILED meanwhile), or a release or namespace entry (its tag says which).
_Entry = Call | bytes
_UNNUMBERED: Final = (RELEASE_TAG, NAMESPACE_TAG)


class WorkerProtocol:
    """See the module docstring."""

    def __init__(self) -> None:
        self.state = State.OPEN
        self.failed: BaseException | None = None  # the deferred error, in FAILED
        #: Result ids of calls that failed or were skipped, and why.
        self.poisoned: dict[int, BaseException] = {}
        self.touched = False  # the running call used the client (see the docstring)
        # Queued output: (stderr?, text), or (None, WARNING meta) for a warning.
        self.output: list[tuple[bool | None, str]] = []
        self._rid = 0  # requests numbered so far
        self._waits: list[int] = []  # the requests being waited for, innermost last
        self._entries: deque[_Entry] = deque()  # of the frame being interpreted
        self._outer: list[deque[_Entry]] = []  # those of the frames a wait interrupted
        self._inbox: deque[Frame] = deque()
        self._backlog: deque[Frame] = deque()  # set aside during a wait
        # What the client may send (BYE closes it), and what the worker may.
        self._conn = Connection(Role.SERVER, WireState.OPEN)
        self._conn_out = Connection(Role.SERVER, WireState.OPEN)
        self._decoder: FrameDecoder | None = None
        self._out: list[Buffer] = []

    # -- state ------------------------------------------------------------------------
    def _enter(self, what: Input) -> None:
        self.state = TRANSITIONS[self.state, what]

    @property
    def waiting(self) -> int:
        """The request whose RESPONSE ends the innermost wait (0: none)."""
        return self._waits[-1] if self._waits else 0

    # -- frames in --------------------------------------------------------------------
    def receive_data(self, data: Buffer) -> None:
        """Bytes from the client (any chunking); ProtocolError if they make no sense."""
        if self._decoder is None:
            self._decoder = FrameDecoder()
        self._decoder.feed(data)
        while (frame := self._decoder.next_frame()) is not None:
            if frame.kind != Kind.BEAT:
                self._inbox.append(self._conn.check_incoming(frame))

    def receive_frame(self, frame: Frame) -> None:
        """One frame from the client (already checked against the handshake state)."""
        self._inbox.append(frame)

    def next_event(self) -> Event | NeedData:
        """What the shell must do next, or NEED_DATA. ProtocolError if the
        client sent something that makes no sense here."""
        while True:
            entries = self._entries
            if entries:  # a batch's entries: pipelined calls, releases, rebinds
                entry = entries.popleft()
                if isinstance(entry, bytes):
                    if entry[:1] == RELEASE_TAG:
                        return Release(self.released(entry[1:]))
                    return Names(entry[1:])
                if self.failed is None:
                    self.touched = False
                    return entry
                self._skip(entry.seq, 0, entry.meta, ())
                continue
            if self._waits:
                if not self._inbox:
                    return NEED_DATA
                frame = self._inbox.popleft()
                if frame.kind == _RESPONSE and frame.seq == self._waits[-1]:
                    return self._answered(frame)
                if frame.kind != _CALL or not frame.flags & _NESTED:
                    self._backlog.append(frame)  # for when no wait is open
                    continue
            elif self._backlog:
                frame = self._backlog.popleft()
            elif self._inbox:
                frame = self._inbox.popleft()
            else:
                return NEED_DATA
            kind = frame.kind
            if kind == _CALL:
                flags, meta = frame.flags, frame.meta
                if flags & _BATCH:
                    if self.failed is None and not self._waits:
                        return Batch(frame.seq, unpack_batch(meta))  # the shell runs it
                    self._unbatch(frame.seq, unpack_batch(meta))
                elif meta[:1] == NAMESPACE_TAG:
                    return Names(meta[1:])
                elif self.failed is None:
                    self.touched = False
                    return Call(frame.seq, bool(flags & _SYNC), meta, frame.buffers)
                else:
                    self._skip(frame.seq, flags, meta, frame.buffers)
            elif kind == Kind.RELEASE:
                return Release(self.released(frame.meta))
            elif kind == Kind.RESUME:
                self.failed = None
                self._enter(Input.RESUME)
            elif kind == _RESPONSE:
                pass  # an answer nobody waits for any more
            elif kind == Kind.BYE:
                self._enter(Input.CLOSE)
                return Closed()
            else:
                raise ProtocolError(f"the worker does not expect frame kind {kind} here")

    def requeue(self, seq: int, entries: list[bytes]) -> None:
        """The rest of a :class:`Batch`, from the call numbered ``seq``, for
        :meth:`next_event` to hand out (or skip: the session has FAILED)."""
        self._unbatch(seq, entries)

    def released(self, packed: bytes) -> list[int]:
        """The handle ids of a release entry or frame, which are no longer poisoned."""
        hids = unpack_ids(packed)
        poisoned = self.poisoned
        if poisoned:
            for hid in hids:
                poisoned.pop(hid, None)
        return hids

    def _unbatch(self, seq: int, subs: list[bytes]) -> None:
        """Queue a batch's entries, numbering its calls from ``seq``."""
        entries = self._entries
        for sub in subs:
            if sub[:1] in _UNNUMBERED:
                entries.append(sub)
            else:
                entries.append(_new_tuple(Call, (seq, False, sub, ())))  # Call(...), at C speed
                seq += 1

    def _skip(self, seq: int, flags: int, meta: bytes, buffers: tuple[Any, ...]) -> None:
        """A call in FAILED: answered with the error if synchronous, else its
        result ids poisoned with it."""
        failed = self.failed
        assert failed is not None
        if flags & _SYNC:
            self._reply_error(seq, failed, deferred=True)
        else:
            self._poison(peek_shape(meta, buffers), failed)

    def _answered(self, frame: Frame) -> Response:
        self._waits.pop()
        self._entries = self._outer.pop()
        # The call that asked goes on; the nested calls did not clear its mark.
        self.touched = True
        return Response(frame.seq, bool(frame.flags & Flag.ERROR), frame.meta, frame.buffers)

    # -- what the engine did ------------------------------------------------------------
    def reply(self, seq: int, meta: bytes, buffers: Sequence[Buffer] = ()) -> None:
        """The value of synchronous call ``seq`` (encoded by the engine)."""
        self.flush_output()
        self._put(_REPLY, _NOPIPE if self.touched else 0, seq, meta, buffers)

    def exhausted(self, seq: int) -> None:
        """Synchronous NEXT ``seq`` found its iterator at its end."""
        self.flush_output()
        self._put(_REPLY, Flag.EXHAUSTED, seq, b"")

    def reply_error(self, seq: int, exc: BaseException) -> None:
        """Synchronous call ``seq`` (or encoding its value) raised ``exc``."""
        self._reply_error(seq, exc, deferred=False)

    def pipelined(self, seq: int, outcome: Outcome) -> None:
        """What became of pipelined call ``seq`` (None: it ran as assumed)."""
        if outcome is None:
            if self.touched:
                self._put(Kind.NOTICE, 0, seq, TOUCHED_NOTICE)
        elif type(outcome) is CallFailed:
            self.failed = outcome.error
            self._enter(Input.FAIL)
            self._poison(outcome.shape, outcome.error)
        elif type(outcome) is Mispredicted:
            if outcome.error is not None:
                self._poison(outcome.poison, outcome.error)
            self._notice(seq, outcome.why, outcome.tid, outcome.types)

    def request(self, meta: bytes, buffers: Sequence[Buffer] = ()) -> int:
        """Ask the client (``meta``: the engine's encoding of the request);
        returns its number, which the :class:`Response` will carry."""
        self.touched = True
        self.flush_output()
        self._rid += 1
        rid = self._rid
        self._put(Kind.REQUEST, 0, rid, meta, buffers)
        self._waits.append(rid)
        self._outer.append(self._entries)
        self._entries = deque()
        return rid

    def abandon(self, rid: int) -> None:
        """Stop waiting for request ``rid`` and any wait opened inside it (what
        asked raised first): else every later frame would be set aside for a
        wait nobody is in, and the session would hang."""
        if rid not in self._waits:
            return
        while self._waits:
            inner = self._entries  # nested calls not run yet: they go first
            self._entries = self._outer.pop()
            self._entries.extendleft(reversed(inner))
            if self._waits.pop() == rid:
                return

    def last_word(self, reason: str) -> None:
        """Why the worker ends the session (a NOTICE with no sequence number)."""
        self.flush_output()
        self._put(Kind.NOTICE, 0, 0, reason.encode("utf-8", "replace"))

    def _reply_error(self, seq: int, exc: BaseException, *, deferred: bool) -> None:
        self.flush_output()
        flags = Flag.ERROR | (Flag.DEFERRED if deferred else 0)
        self._put(_REPLY, flags, seq, error_payload(exc))

    def _notice(self, seq: int, text: str, tid: int = 0, types: Sequence[Any] = ()) -> None:
        if text == RETURNED_NONE:
            meta = NONE_NOTICE
        elif tid:  # the result is a handle of another class: the client fixes its proxy
            meta = pickle.dumps(("mispredicted", text, tid, [tuple(t) for t in types]))
        else:
            meta = pickle.dumps(("mispredicted", text))
        self._put(Kind.NOTICE, 0, seq, meta)

    def _poison(self, shape: Shape, err: BaseException) -> None:
        for hid in shape_handles(shape):
            self.poisoned[hid] = err

    # -- output -------------------------------------------------------------------------
    def write_output(self, text: str, *, stderr: bool) -> None:
        self.output.append((stderr, text))

    def write_warning(self, meta: str) -> None:
        """Queue a warning (the JSON of a WARNING frame) in its place among the output.

        The call that warned is marked as touching the client (as file access
        does): the client stops pipelining its site, so that later warnings of
        the same site reach the script at the line that made them.
        """
        self.touched = True
        self.output.append((None, meta))

    def flush_output(self) -> None:
        """Encode the queued output: consecutive writes to one stream as one
        frame, a warning as a frame of its own between the text around it."""
        if not self.output:
            return
        chunks, self.output = self.output, []
        cur_err = False
        cur: list[str] = []
        for is_err, text in chunks:
            if is_err is None:
                if cur:
                    self._put_output(cur_err, "".join(cur))
                    cur = []
                self._put(Kind.WARNING, 0, 0, text.encode())
                continue
            if cur and is_err != cur_err:
                self._put_output(cur_err, "".join(cur))
                cur = []
            cur_err = is_err
            cur.append(text)
        if cur:
            self._put_output(cur_err, "".join(cur))

    def _put_output(self, stderr: bool, text: str) -> None:
        flags = Flag.STDERR if stderr else Flag.NONE
        self._put(Kind.OUTPUT, flags, 0, text.encode("utf-8", "surrogateescape"))

    # -- bytes out ----------------------------------------------------------------------
    def data_to_send(self) -> list[Buffer]:
        """Everything decided so far, as the pieces of whole frames."""
        out, self._out = self._out, []
        return out

    def _put(
        self, kind: int, flags: int, seq: int, meta: Buffer, buffers: Sequence[Buffer] = ()
    ) -> None:
        self._conn_out.check_outgoing(kind)
        self._out += encode_frame(kind, flags, seq, meta, buffers)


def peek_shape(meta: bytes, buffers: Sequence[Any]) -> Shape:
    """The result shape of a call that will not run, read without importing or
    resolving anything; None if it cannot be read."""
    if meta[:1] == _COMPACT:
        return compact.peek_shape(meta)
    try:
        return shape_from_wire(_ShapeOnly(io.BytesIO(meta), buffers=buffers).load())
    except Exception:
        return None


class _ShapeOnly(pickle.Unpickler):
    """Reads just enough of a call to find its shape (never imports anything)."""

    def find_class(self, module: str, name: str) -> Any:
        return lambda *a, **k: None

    def load(self) -> Any:
        return super().load()[1]
