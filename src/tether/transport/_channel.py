"""A blocking, frame-oriented channel over one stream socket.

The socket is non-blocking underneath so that sending never deadlocks: while a
large write is stuck because the peer is itself busy writing to us, the channel
keeps reading what the peer sends and queues it. Receiving spins for a short
while on non-blocking reads before sleeping in ``select``: on an idle virtual
machine, waking the peer's CPU costs most of a round trip, and a brief spin
catches replies that come back within tens of microseconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections import deque
from collections.abc import Sequence

from tether.wire import DEFAULT_MAX_FRAME, Connection, Frame, FrameDecoder, Role, State
from tether.wire._frames import Buffer, encode_frame

_READ_CHUNK = 256 * 1024
_SENDMSG_MAX_PIECES = 64
_RESPIN = 32  # waits without spinning before a spin is tried again


def _spin_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("TETHER_SPIN_US", "100"))) / 1e6
    except ValueError:
        return 100e-6


class ChannelClosed(Exception):
    """The peer closed the connection or it broke; ``args[0]`` says how."""


class Channel:
    """Frames over a socket: ``send`` queues, ``flush`` writes, ``recv`` waits."""

    def __init__(
        self,
        sock: socket.socket,
        role: Role,
        *,
        state: State = State.HANDSHAKE,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.conn = Connection(role, state)
        self.max_frame = max_frame
        self._dec = FrameDecoder(max_frame=max_frame)
        self._out: deque[memoryview] = deque()
        self._out_bytes = 0
        self._frames: deque[Frame] = deque()
        self._rbuf = bytearray(_READ_CHUNK)
        self._spin = _spin_seconds()
        self._last_wait = 0.0
        self._missed = 0
        self._closed = False

    # -- sending ------------------------------------------------------------
    def send(
        self, kind: int, flags: int, seq: int, meta: Buffer, buffers: Sequence[Buffer] = ()
    ) -> None:
        """Queue one frame. Nothing is written until :meth:`flush` (or :meth:`recv`)."""
        self.conn.check_outgoing(kind)
        self.send_pieces(encode_frame(kind, flags, seq, meta, buffers, max_frame=self.max_frame))

    def send_pieces(self, pieces: Sequence[Buffer]) -> None:
        for p in pieces:
            mv = memoryview(p)
            if mv.ndim != 1 or mv.format != "B":
                mv = mv.cast("B")
            if mv.nbytes:
                self._out.append(mv)
                self._out_bytes += mv.nbytes

    @property
    def pending_output(self) -> int:
        """Bytes queued but not yet written."""
        return self._out_bytes

    def flush(self) -> None:
        """Write everything queued; reads incoming frames meanwhile if blocked."""
        out = self._out
        while out:
            try:
                pieces = [out[i] for i in range(min(len(out), _SENDMSG_MAX_PIECES))]
                n = self.sock.sendmsg(pieces)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._broken(exc)
            self._out_bytes -= n
            while n:
                head = out[0]
                if n >= head.nbytes:
                    n -= head.nbytes
                    out.popleft()
                else:
                    out[0] = head[n:]
                    n = 0
            if out:
                r, _, _ = select.select([self.sock], [self.sock], [])
                if r:
                    self._read_available()

    # -- receiving ----------------------------------------------------------
    def recv(self, timeout: float | None = None) -> Frame:
        """Flush, then return the next frame, waiting up to ``timeout`` seconds.

        Raises TimeoutError when the timeout passes, ChannelClosed on EOF.
        """
        self.flush()
        if self._frames:
            return self._frames.popleft()
        if self._read_available() and self._frames:
            return self._frames.popleft()
        start = time.perf_counter()
        # Spin only while spinning pays: the last answer came within the spin,
        # so both ends stay awake and a round trip costs no wake-up. When
        # answers take longer (real work, or a busy machine where the spin
        # steals the CPU the peer needs), sleep at once, and try spinning again
        # only every _RESPIN waits.
        if self._spin and (self._last_wait <= self._spin or self._missed >= _RESPIN):
            self._missed = 0
            until = start + self._spin
            while time.perf_counter() < until:
                if self._read_available() and self._frames:
                    self._last_wait = time.perf_counter() - start
                    return self._frames.popleft()
        else:
            self._missed += 1
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._frames:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise TimeoutError("no frame from the peer in time")
            self._read_available()
        self._last_wait = time.perf_counter() - start
        return self._frames.popleft()

    def poll(self) -> Frame | None:
        """Return a frame that has already arrived, without waiting."""
        if not self._frames:
            self._read_available()
        return self._frames.popleft() if self._frames else None

    def _read_available(self) -> bool:
        """Read whatever the socket has; return True if anything arrived."""
        got = False
        dec = self._dec
        while True:
            target = dec.direct_target()
            try:
                if target is not None:
                    n = self.sock.recv_into(target)
                else:
                    n = self.sock.recv_into(self._rbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._broken(exc)
            if n == 0:
                self._eof()
            got = True
            if target is not None:
                dec.direct_filled(n)
            else:
                dec.feed(memoryview(self._rbuf)[:n])
            while (frame := dec.next_frame()) is not None:
                self._frames.append(self.conn.check_incoming(frame))
            if target is None and n < len(self._rbuf):
                break
        return got

    def _eof(self) -> None:
        self._closed = True
        raise ChannelClosed("the peer closed the connection")

    def _broken(self, exc: OSError) -> None:
        self._closed = True
        raise ChannelClosed(f"the connection broke: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self.sock.fileno()
