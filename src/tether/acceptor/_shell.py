"""The worker's shell: moves frames between a link and the protocol, and
hands the calls to the engine.

:class:`WorkerShell` owns a :class:`~tether.acceptor._protocol.WorkerProtocol`
and an :class:`~tether.acceptor._engine.Engine` and decides nothing itself:
the protocol says what each frame means and what goes out, the engine runs
calls. A *link* is anything that takes bytes and gives frames (:class:`Link`):
the worker's :class:`~tether.transport.Channel`, or the tests' memory pipe.

The request round trip (a module's source, a file, a global, fetched while a
call runs) is a blocking call from the engine's point of view
(:meth:`WorkerShell.request`): the shell takes frames from the link until the
protocol says the answer has come, running the nested calls it hands out
meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from tether._errors import SessionError
from tether.acceptor._engine import EXHAUSTED, Engine
from tether.acceptor._events import (
    NEED_DATA,
    Batch,
    Call,
    Closed,
    Event,
    Names,
    Release,
    Response,
)
from tether.acceptor._protocol import WorkerProtocol
from tether.wire import Frame, Kind
from tether.wire._compact import COMPACT_TAG
from tether.wire._frames import Buffer
from tether.wire._lanes import NOT_RUN
from tether.wire._ops import NAMESPACE_TAG, RELEASE_TAG
from tether.wire._requests import WorkerRequest, request_to_wire

_RELEASE, _NAMESPACE, _COMPACT = RELEASE_TAG[0], NAMESPACE_TAG[0], COMPACT_TAG[0]

_CALL = int(Kind.CALL)


class Link(Protocol):
    """What the shell needs of a connection (a Channel has it)."""

    def send_pieces(self, pieces: Sequence[Buffer]) -> None: ...

    def poll(self) -> Frame | None: ...

    def recv(self) -> Frame: ...

    def flush(self) -> None: ...


class WorkerShell:
    """Serves one session over ``link``; see the module docstring.

    ``calls`` (when given) is a one-slot counter of the CALL frames received,
    published before each blocking wait, for the acceptor's /metrics.
    """

    def __init__(
        self,
        link: Link,
        *,
        value_modules: frozenset[str] = frozenset(),
        scalar_modules: frozenset[str] = frozenset(),
    ) -> None:
        self.link = link
        self.protocol = WorkerProtocol()
        self.engine = Engine(
            self.request,
            poisoned=self.protocol.poisoned,
            value_modules=value_modules,
            scalar_modules=scalar_modules,
        )
        self.pid = os.getpid()
        self.calls: Any = None  # a memoryview of the shared counter, or None
        self._served = 0

    def serve(self) -> None:
        """Serve until the client says BYE (ChannelClosed if it goes away)."""
        proto = self.protocol
        while not self.pump():
            # About to wait: the output so far goes out first.
            proto.flush_output()
            self._publish()
            self.write()
            self._receive(self.link.recv())

    def pump(self) -> bool:
        """Carry out everything the frames that have arrived ask for, without
        waiting; True once the client has said BYE."""
        proto, link, engine = self.protocol, self.link, self.engine
        while True:
            event = proto.next_event()
            if type(event) is Call:  # the hot path, inline
                seq, sync, meta, buffers = event
                if sync:
                    self._call_sync(seq, meta, buffers)
                else:
                    outcome = engine.call_pipelined(meta, buffers)
                    if outcome is not None or proto.touched:  # else nothing to say
                        proto.pipelined(seq, outcome)
            elif type(event) is Batch:
                self._run_batch(event.seq, event.entries)
            elif type(event) is Release:
                engine.release(event.hids)
            elif event is NEED_DATA:
                frame = link.poll()
                if frame is None:
                    return False
                self._receive(frame)
            elif type(event) is Closed:
                self._publish()
                proto.flush_output()
                self.write()
                link.flush()
                return True
            else:
                self.handle(event)

    def _run_batch(self, seq: int, entries: list[bytes]) -> None:
        """Run a :class:`Batch` straight through: what ``next_event`` and ``handle``
        would do entry by entry, without an event for each. When a call leaves the
        session FAILED (or something propagates), the rest goes back to the protocol."""
        proto, engine = self.protocol, self.engine
        run, general = engine.run_lane, engine.call_general
        i, n = 0, len(entries)
        try:
            while i < n:
                sub = entries[i]
                i += 1
                tag = sub[0] if sub else -1  # an empty entry fails as a call, as before
                if tag == _RELEASE:
                    engine.release(proto.released(sub[1:]))
                    continue
                if tag == _NAMESPACE:
                    engine.set_names(sub[1:])
                    continue
                proto.touched = False
                seq += 1
                # A lane's runner if its layout has one (acceptor/_fused.py), else
                # the engine's general path: Engine.call_pipelined in two steps.
                outcome = run(sub) if tag == _COMPACT else NOT_RUN
                if outcome is NOT_RUN:
                    outcome = general(sub, ())
                if outcome is not None or proto.touched:
                    proto.pipelined(seq - 1, outcome)
                    # A call that waited for the client may have run nested calls
                    # that failed: the session is FAILED even if this one ran.
                    if proto.failed is not None:
                        break
        finally:
            if i < n:
                proto.requeue(seq, entries[i:])

    def handle(self, event: Event) -> None:
        """Carry out one event (a call runs, a release frees, names rebind)."""
        if type(event) is Call:
            if event.sync:
                self._call_sync(event.seq, event.meta, event.buffers)
            else:
                self.protocol.pipelined(
                    event.seq, self.engine.call_pipelined(event.meta, event.buffers)
                )
        elif type(event) is Batch:
            self._run_batch(event.seq, event.entries)
        elif type(event) is Release:
            self.engine.release(event.hids)
        elif type(event) is Names:
            self.engine.set_names(event.meta)
        else:
            raise AssertionError(f"the protocol handed out {event!r} out of a wait")

    def _call_sync(self, seq: int, meta: bytes, buffers: tuple[Any, ...]) -> None:
        proto, engine = self.protocol, self.engine
        try:
            value = engine.call_sync(meta, buffers)
        except BaseException as exc:
            proto.reply_error(seq, exc)
            return
        if value is EXHAUSTED:
            proto.exhausted(seq)
            return
        try:
            meta, pickled = engine.dumps_value(value)
        except Exception as exc:
            proto.reply_error(seq, exc)
            return
        proto.reply(seq, meta, [b.raw() for b in pickled])

    def request(self, request: WorkerRequest) -> Any:
        """A blocking round trip to the client (module sources, file contents)."""
        kind, payload = request_to_wire(request)
        if os.getpid() != self.pid:
            # A process the worker forked (DataLoader workers) shares the socket:
            # using it would garble the session. Say so instead.
            raise SessionError(
                f"remote code in a process the worker forked (pid {os.getpid()}) needs the "
                f"client ({kind} {_describe(payload)}), which only the worker itself can "
                "reach: pass plain values to code that runs in DataLoader workers, or use "
                "num_workers=0"
            )
        proto, engine = self.protocol, self.engine
        meta, buffers = engine.dumps_value((kind, payload))  # the wire form
        rid = proto.request(meta, [b.raw() for b in buffers])
        try:
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    self.write()
                    self._receive(self.link.recv())
                elif type(event) is Response:
                    break
                else:
                    self.handle(event)
        except BaseException:
            # (a RecursionError of nested page-ins, an interrupt): the wait must
            # not outlive the frame that opened it
            proto.abandon(rid)
            raise
        value = engine.loads(event.meta, event.buffers)
        if event.error:
            raise value
        return value

    def last_word(self, reason: str) -> None:
        """Tell the client why the session ends, and write it out now."""
        self.protocol.last_word(reason)
        self.write()
        self.link.flush()

    def _receive(self, frame: Frame) -> None:
        if frame.kind == _CALL:
            self._served += 1
        self.protocol.receive_frame(frame)

    def write(self) -> None:
        """Hand the link what the protocol has decided to send."""
        out = self.protocol.data_to_send()
        if out:
            self.link.send_pieces(out)

    def _publish(self) -> None:
        # Counted in an attribute and published only before blocking (about
        # 30 ns a frame, against 100-200 ns for a store into shared memory).
        if self.calls is not None:
            self.calls[0] = self._served


def _describe(payload: Any) -> str:
    if isinstance(payload, tuple) and payload and all(isinstance(p, str) for p in payload):
        return ".".join(payload)
    return type(payload).__name__
