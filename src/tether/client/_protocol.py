"""The client's half of an open session, sans I/O.

Theory of operation
-------------------
:class:`ClientProtocol` decides everything about the frames a client sends and
what the frames it receives mean; it never touches a socket, a thread or a
clock. :class:`~tether.client._session.Session` drives it over a channel:

* **Calls in.** :meth:`~ClientProtocol.call` takes one call's encoded meta and
  numbers it. A synchronous call (SYNC) is a frame of its own, after the
  pipelined calls queued before it, and the session then waits for its REPLY.
  A pipelined call is queued in the current batch, which becomes one CALL
  frame (BATCH when it holds several entries) when the session next waits,
  when :data:`FLUSH_EVERY` calls or :data:`FLUSH_BYTES` bytes are queued
  (:attr:`~ClientProtocol.flush_due`), or before any other frame. Calls with
  out-of-band buffers, and calls made while the worker waits for an answer
  (NESTED), go alone at once.
* **Releases.** :meth:`~ClientProtocol.release` (called from ``__del__``) only
  appends ``(hid, calls queued so far)`` to one queue. The ids go out inside
  the next batch, each after the calls queued before its proxy died
  (:func:`~tether.client._releases.interleave_releases`), or in a RELEASE frame
  before a synchronous
  call or when :data:`RELEASE_BATCH` have piled up.
* **Frames in.** :meth:`~ClientProtocol.receive_frame` (or
  :meth:`~ClientProtocol.receive_data`, bytes through the protocol's own
  decoder) turns each frame into an event: :class:`Reply`, :class:`Exhausted`,
  :class:`Failed`, :class:`Output`, :class:`WarningFrame`, :class:`Request` or
  :class:`Lost`; None for a frame that needs nothing from the session (a
  reply to a wait that was interrupted, a NOTICE that a prediction was
  wrong, which the protocol records in its :class:`Predictions`). A failed
  pipelined call is reported on the next REPLY, flagged DEFERRED: the
  protocol queues the RESUME that lets the worker go on, and the session
  raises the error at that synchronous point.
* **Bytes out.** Frames are encoded as they are decided and wait in the
  protocol until :meth:`~ClientProtocol.data_to_send`; the session hands them
  to the channel right before it writes (a flush, or a wait).

States (:data:`TRANSITIONS`): OPEN until the worker is lost (a NOTICE with no
sequence number, the worker's last word, or the channel breaking: LOST) or the
script closes the session (CLOSED). Calls are refused outside OPEN; a lost
session that is closed stays known as lost (:attr:`~ClientProtocol.lost`).
"""

from __future__ import annotations

import enum
import pickle
from collections.abc import Callable
from typing import Any, Final

from tether._errors import DeviceLost, ProtocolError, SessionClosed
from tether.client._events import (
    Event,
    Exhausted,
    Failed,
    Lost,
    Output,
    Reply,
    Request,
    Retyped,
    WarningFrame,
)
from tether.client._predict import Predictions, Template
from tether.client._releases import interleave_releases
from tether.wire import Flag, Frame, FrameDecoder, Kind
from tether.wire._frames import Buffer, encode_frame
from tether.wire._messages import NONE_NOTICE, TOUCHED_NOTICE, Connection, Role
from tether.wire._messages import State as WireState
from tether.wire._ops import ENTRY_HEAD as _ENTRY_HEAD
from tether.wire._ops import NONE, frame_entry, pack_ids

# Pipelined calls queued before they are written anyway. When the script
# waits, the worker still has the last batch to run: small batches keep that
# tail short. Measured (a loop reading a value every 200 calls): 16 per batch
# 12.6 us per iteration, 64 per batch 14.1 us; pipelined throughput the same.
FLUSH_EVERY: Final = 16
FLUSH_BYTES: Final = 256 * 1024
RELEASE_BATCH: Final = 256  # released handles sent together (or with the next sync)

_SYNC = int(Flag.SYNC)  # plain ints on the hot path: enum arithmetic is slow
_NESTED = int(Flag.NESTED)
_BATCH = int(Flag.BATCH)
_ERROR = int(Flag.ERROR)
_DEFERRED = int(Flag.DEFERRED)
_EXHAUSTED = int(Flag.EXHAUSTED)
_STDERR = int(Flag.STDERR)
_CALL = int(Kind.CALL)
_REPLY = int(Kind.REPLY)


class State(enum.Enum):
    OPEN = "open"
    LOST = "lost"  # the worker is gone: every call fails with DeviceLost
    CLOSED = "closed"


class Input(enum.Enum):
    LOSE = "lose"
    CLOSE = "close"


#: The session's states as data: (state, input) -> next state.
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (State.OPEN, Input.LOSE): State.LOST,
    (State.OPEN, Input.CLOSE): State.CLOSED,
    (State.LOST, Input.LOSE): State.LOST,
    (State.LOST, Input.CLOSE): State.CLOSED,
    (State.CLOSED, Input.LOSE): State.CLOSED,
    (State.CLOSED, Input.CLOSE): State.CLOSED,
}


class ClientProtocol:
    """See the module docstring. ``in_handler`` says whether the script's
    current line could catch a remote error (then nothing is pipelined);
    ``result_used`` whether it uses the value of the call it makes (then a
    call predicted to return None is not pipelined: the None would be a guess)."""

    def __init__(
        self,
        *,
        session_id: str = "",
        address: str = "",
        in_handler: Callable[[], bool] = lambda: False,
        result_used: Callable[[], bool] = lambda: False,
    ) -> None:
        self.session_id = session_id
        self.address = address
        self.in_handler = in_handler
        self.result_used = result_used
        self.predictions = Predictions()
        self.state = State.OPEN
        self.lost_reason: str | None = None
        self.seq = 0  # calls numbered so far
        # The synchronous calls being waited for, innermost last: answering a
        # request, the script's code may make calls and wait for them in turn.
        self._waits: list[int] = []
        self.unsynced = False  # pipelined calls sent since the last REPLY
        self.flush_due = False  # enough is queued: the session should write now
        self.stats = {"sync": 0, "async": 0}
        self._conn = Connection(Role.CLIENT, WireState.OPEN)
        self._decoder: FrameDecoder | None = None
        self._out: list[Buffer] = []
        self._out_bytes = 0
        self._batch: list[bytes] = []
        self._batch_seq = 0
        self._batch_bytes = 0
        self._queued = 0
        self._released: list[tuple[int, int]] = []  # (hid, len(batch) when released)

    # -- state ------------------------------------------------------------------------
    def _enter(self, what: Input) -> None:
        self.state = TRANSITIONS[self.state, what]

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    def check_open(self) -> None:
        """Raise DeviceLost or SessionClosed unless calls may be sent."""
        if self.lost_reason is not None:
            raise DeviceLost(self.lost_reason)
        if self.state is not State.OPEN:
            raise SessionClosed(f"session {self.session_id} is closed")

    def lose(self, why: str) -> str:
        """The worker is gone (``why``); returns the message for DeviceLost."""
        if self.state is State.OPEN:
            self.lost_reason = (
                f"lost the worker of session {self.session_id} on {self.address} ({why}); "
                "its objects are gone: open a new session"
            )
        self._enter(Input.LOSE)
        return self.lost_reason or why

    def close(self) -> None:
        """End the session: the queued calls, then BYE (none if the worker is lost)."""
        if self.state is State.OPEN:
            self._frame(Kind.BYE, 0, 0, b"")
        self._enter(Input.CLOSE)

    def abort(self) -> None:
        """End the session at once: nothing queued is sent."""
        self._batch = []
        self._out, self._out_bytes = [], 0
        self._enter(Input.CLOSE)

    # -- calls out --------------------------------------------------------------------
    def plan(self, key: Any) -> Template | None:
        """How to send a call of site ``key``: a template to pipeline it with,
        or None to call it synchronously (and learn from its result)."""
        template = self.predictions.predict(key)
        if template is None or self.in_handler():
            return None
        if template is NONE and self.result_used():
            return None
        return template

    def call(
        self, meta: bytes, buffers: tuple[Buffer, ...] = (), sync: int = 0, nested: int = 0
    ) -> int:
        """Number one call and queue or encode it; returns its sequence number.
        ``sync`` and ``nested`` are truth values (positional ints on the hot path)."""
        if not (sync or buffers or nested):
            return self.call_entry(frame_entry(meta))
        if self.state is not State.OPEN:
            self.check_open()
        flags = (_SYNC if sync else 0) | (_NESTED if nested else 0)
        if len(self._released) >= RELEASE_BATCH or (sync and self._released):
            self._emit_batch()
            self._send_releases()
        self.seq += 1
        seq = self.seq
        self._frame(_CALL, flags, seq, meta, buffers)
        if sync:
            self.stats["sync"] += 1
            self._waits.append(seq)
            self._queued = 0
        else:
            self.stats["async"] += 1
            self.unsynced = True
            if self._out_bytes >= FLUSH_BYTES:
                self._queued = 0
                self.flush_due = True
        return seq

    def call_entry(self, entry: bytes) -> int:
        """Number one pipelined call given as a batch entry (its meta behind its
        length, :func:`~tether.wire._ops.frame_entry`) and queue it; returns its
        sequence number. The session's fast lane packs entries whole."""
        if self.state is not State.OPEN:
            self.check_open()
        if len(self._released) >= RELEASE_BATCH:
            self._emit_batch()
            self._send_releases()
        self.seq = seq = self.seq + 1
        # Pipelined calls travel together: one frame, one header to check
        # and one send for up to FLUSH_EVERY of them.
        batch = self._batch
        if not batch:
            self._batch_seq = seq
            self._batch_bytes = 0
        batch.append(entry)
        self._batch_bytes += len(entry)
        self.stats["async"] += 1
        self.unsynced = True
        self._queued = queued = self._queued + 1
        if queued >= FLUSH_EVERY or self._batch_bytes >= FLUSH_BYTES:
            self._queued = 0
            self._emit_batch()
            self.flush_due = True
        return seq

    def names(self, entry: bytes) -> None:
        """Queue a NAMESPACE_TAG entry ahead of the next call (it takes no number)."""
        if not self._batch:
            self._batch_seq = self.seq + 1
            self._batch_bytes = 0
        self._batch.append(frame_entry(entry))

    def release(self, hid: int) -> None:
        """The proxy of handle ``hid`` died (from ``__del__``: only appends)."""
        if self.state is not State.CLOSED:
            self._released.append((hid, len(self._batch)))

    def send_released(self) -> None:
        """Send the queued calls and every release now (``Session.release``)."""
        self.check_open()
        self._emit_batch()
        self._send_releases()

    def respond(self, rid: int, meta: bytes, buffers: tuple[Buffer, ...], *, error: bool) -> None:
        """The answer to the worker's request ``rid``."""
        self._frame(Kind.RESPONSE, _ERROR if error else 0, rid, meta, buffers)

    def data_to_send(self) -> list[Buffer]:
        """Everything decided so far, as the pieces of whole frames (queued
        pipelined calls stay queued unless a frame was emitted after them)."""
        out = self._out
        self._out, self._out_bytes = [], 0
        self.flush_due = False
        return out

    def emit_batch(self) -> None:
        """Make the queued pipelined calls a frame now (before a flush)."""
        self._queued = 0
        self._emit_batch()

    # -- frames in --------------------------------------------------------------------
    @property
    def awaiting(self) -> int:
        """The call whose REPLY ends the innermost wait (0: none)."""
        return self._waits[-1] if self._waits else 0

    def expect(self, seq: int) -> None:
        """Wait for call ``seq`` (a synchronous :meth:`call` already does)."""
        if self.awaiting != seq:
            self._waits.append(seq)

    def abandon(self, seq: int) -> None:
        """The wait for ``seq`` ended without its reply (Ctrl-C, an error):
        its REPLY, when it comes, is skipped."""
        if seq in self._waits:
            self._waits.remove(seq)

    def receive_data(self, data: Buffer) -> list[Event]:
        """Bytes from the worker (any chunking): the events they complete."""
        if self._decoder is None:
            self._decoder = FrameDecoder()
        self._decoder.feed(data)
        events = []
        while (frame := self._decoder.next_frame()) is not None:
            if frame.kind == Kind.BEAT:
                continue
            event = self.receive_frame(self._conn.check_incoming(frame))
            if event is not None:
                events.append(event)
        return events

    def receive_frame(self, frame: Frame) -> Event | None:
        """One frame from the worker: its event, or None if the session need
        not act on it. ProtocolError if it makes no sense here."""
        kind = frame.kind
        if kind == _REPLY:
            seq = frame.seq
            awaiting = self.awaiting
            if seq < awaiting:
                return None  # the answer to a wait that was interrupted (Ctrl-C)
            if seq != awaiting:
                raise ProtocolError(f"reply to call {seq} while waiting for {awaiting}")
            self._waits.pop()
            self.unsynced = False
            self.predictions.synced()
            flags = frame.flags
            if flags & _DEFERRED:
                self._frame(Kind.RESUME, 0, 0, b"")  # the worker runs calls again
            if flags & _ERROR:
                return Failed(seq, frame.meta, bool(flags & _DEFERRED))
            if flags & _EXHAUSTED:
                return Exhausted(seq)
            return Reply(seq, flags, frame.meta, frame.buffers)
        if kind == Kind.OUTPUT:
            return Output(frame.meta, bool(frame.flags & _STDERR))
        if kind == Kind.WARNING:
            return WarningFrame(frame.meta)
        if kind == Kind.REQUEST:
            return Request(frame.seq, frame.meta, frame.buffers)
        if kind == Kind.NOTICE:
            if frame.seq == 0:  # the worker's last word: who ended the session, and why
                return Lost(bytes(frame.meta).decode("utf-8", "replace"))
            if frame.meta == TOUCHED_NOTICE:  # ran as predicted, but used the client
                self.predictions.touched(frame.seq)
                return None
            if frame.meta == NONE_NOTICE:
                self.predictions.mispredicted(frame.seq, none=True)
                return None
            return self._mispredicted(frame)
        raise ProtocolError(f"the client does not expect frame kind {kind} here")

    def _mispredicted(self, frame: Frame) -> Retyped | None:
        """A NOTICE that pipelined call ``frame.seq`` returned something else; a
        Retyped event if its result is a handle of another class (the worker's
        NOTICE says which: ``("mispredicted", why, tid, types)``)."""
        result = self.predictions.mispredicted(frame.seq)
        if not callable(result):
            return None  # nothing was handed out for it, or it was synced since
        try:
            _, _, tid, types = pickle.loads(frame.meta)
            if type(tid) is not int or tid <= 0:
                return None
            return Retyped(result, tid, tuple(tuple(t) for t in types))
        except Exception:  # a notice of the result's class only, or none the client reads
            return None

    # -- encoding ---------------------------------------------------------------------
    def _frame(
        self, kind: int, flags: int, seq: int, meta: Buffer, buffers: tuple[Buffer, ...] = ()
    ) -> None:
        """Encode one frame after the pipelined calls queued before it."""
        self._emit_batch()
        self._put(kind, flags, seq, meta, buffers)

    def _put(
        self, kind: int, flags: int, seq: int, meta: Buffer, buffers: tuple[Buffer, ...] = ()
    ) -> None:
        self._conn.check_outgoing(kind)
        pieces = encode_frame(kind, flags, seq, meta, buffers)
        self._out += pieces
        for p in pieces:
            self._out_bytes += memoryview(p).nbytes

    def _emit_batch(self) -> None:
        metas = self._batch
        if not metas:
            return
        self._batch = []
        if self._released:
            released, self._released = self._released, []
            metas = interleave_releases(
                metas, [hid for hid, _ in released], [at for _, at in released]
            )
        if len(metas) == 1:
            self._put(_CALL, 0, self._batch_seq, metas[0][_ENTRY_HEAD:])
        else:
            self._put(_CALL, _BATCH, self._batch_seq, b"".join(metas))

    def _send_releases(self) -> None:
        """Send the handles released since the last batch (none are in one now)."""
        if self._released:
            released, self._released = self._released, []
            self._put(Kind.RELEASE, 0, 0, pack_ids([hid for hid, _ in released]))
