"""A worker shell's link in memory: frames in from a deque, frames out into a list.

When the shell would wait (``recv`` with nothing queued) the link plays the
client's part of a request round trip: it reads the worker's last REQUEST,
asks ``answer`` and queues the RESPONSE (after any frames ``answer`` queued
first, such as a nested call). With nothing to answer, a wait would never
end: AssertionError.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tether.acceptor._shell import WorkerShell
from tether.wire import Flag, Frame, FrameDecoder, Kind
from tether.wire._frames import Buffer, frame_bytes
from tether.wire._requests import WorkerRequest, request_from_wire

Answer = Callable[["MemoryLink", WorkerRequest], Any]


class MemoryLink:
    def __init__(self, answer: Answer | None = None) -> None:
        self.inbox: deque[Frame] = deque()
        self.frames: list[Frame] = []  # everything the worker sent, decoded
        self.answer = answer
        self._decoder = FrameDecoder()
        self._answered: set[int] = set()

    # -- the Link protocol ------------------------------------------------------------
    def send_pieces(self, pieces: Sequence[Buffer]) -> None:
        self._decoder.feed(frame_bytes(pieces))
        while (frame := self._decoder.next_frame()) is not None:
            self.frames.append(frame)
        assert self._decoder.at_boundary()

    def poll(self) -> Frame | None:
        return self.inbox.popleft() if self.inbox else None

    def recv(self) -> Frame:
        if not self.inbox:
            self._answer_request()
        return self.inbox.popleft()

    def flush(self) -> None:
        pass

    # -- the client's part --------------------------------------------------------------
    def push(self, kind: int, flags: int = 0, seq: int = 0, meta: bytes = b"") -> None:
        self.inbox.append(Frame(kind=kind, flags=flags, seq=seq, meta=meta))

    @property
    def sent(self) -> list[tuple[int, int, int, bytes]]:
        return [(f.kind, f.flags, f.seq, bytes(f.meta)) for f in self.frames]

    def _answer_request(self) -> None:
        waiting = [f for f in self.frames if f.kind == Kind.REQUEST and f.seq not in self._answered]
        if self.answer is None or not waiting:
            raise AssertionError("the worker waits for a frame nobody will send")
        frame = waiting[-1]  # the innermost wait
        self._answered.add(frame.seq)
        _types, inner = pickle.loads(frame.meta)
        request = request_from_wire(pickle.loads(inner))
        try:
            value, flags = self.answer(self, request), 0
        except Exception as exc:
            value, flags = exc, int(Flag.ERROR)
        self.push(Kind.RESPONSE, flags, frame.seq, pickle.dumps(value))


def pump(shell: WorkerShell) -> None:
    """Run what has been pushed, and hand the link what the worker decided."""
    shell.pump()
    shell.write()
