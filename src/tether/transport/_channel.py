"""A blocking, frame-oriented channel over one stream socket.

The socket is non-blocking underneath so that sending never deadlocks: while a
large write is stuck because the peer is itself busy writing to us, the channel
keeps reading what the peer sends and queues it. Receiving spins for a short
while on non-blocking reads before sleeping in ``poll``: on an idle virtual
machine, waking the peer's CPU costs most of a round trip, and a brief spin
catches replies that come back within tens of microseconds.

Sleeping uses ``poll(2)``, never ``select(2)``: select cannot watch an fd
numbered 1024 or more, and a client with many files open, or a worker whose
acceptor holds many connections, gets such numbers. One ``poll`` object per
direction is built once, so a wait costs one system call and no registration.

The socket may be an ``ssl.SSLSocket`` (``tls://``). It has no ``sendmsg``, so
small pieces are joined into one TLS record (one segment, one wake-up at the
peer) and big ones are written straight from their buffers. A non-blocking TLS
socket says "not now" with ``SSLWantReadError``/``SSLWantWriteError`` rather
than ``BlockingIOError``, and may hold decrypted bytes that ``poll`` cannot
see, so a TLS read goes on until the socket says "not now": nothing is left
in the TLS layer when the channel goes to sleep. Plain sockets take none of
these paths.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence

from tether._errors import TetherError
from tether.wire import DEFAULT_MAX_FRAME, Connection, Frame, FrameDecoder, Role, State
from tether.wire._frames import Buffer, encode_frame

_READ_CHUNK = 256 * 1024
_SENDMSG_MAX_PIECES = 64
_RESPIN = 32  # waits without spinning before a spin is tried again
#: TLS only: pieces smaller than this are joined into one write (one record);
#: a TLS record holds at most 16 KiB of data.
_TLS_JOIN = 16 * 1024
_NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_POLL_READ = select.POLLIN | select.POLLPRI


def _spin_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("TETHER_SPIN_US", "100"))) / 1e6
    except ValueError:
        return 100e-6


class ChannelClosed(TetherError):
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
        self._ended: ChannelClosed | None = None  # raised once the frames before it are taken
        self._tls = isinstance(sock, ssl.SSLSocket)
        fd = sock.fileno()
        self._wait_read = select.poll()
        self._wait_read.register(fd, _POLL_READ)
        self._wait_any = select.poll()
        self._wait_any.register(fd, _POLL_READ | select.POLLOUT)

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
            wait = self._wait_any
            try:
                if self._tls:
                    n = self._send_tls()
                else:
                    pieces = [out[i] for i in range(min(len(out), _SENDMSG_MAX_PIECES))]
                    n = self.sock.sendmsg(pieces)
            except ssl.SSLWantReadError:  # TLS must read before it can write
                n = 0
                wait = self._wait_read
            except _NOT_NOW:
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
                events = wait.poll()
                if events and events[0][1] != select.POLLOUT:  # readable, or hung up
                    self._read_available()

    def _send_tls(self) -> int:
        """One write to a TLS socket; returns the bytes taken.

        After a "not now", OpenSSL wants the retry to start with the same bytes:
        it does, since nothing leaves the queue until written.
        """
        out = self._out
        head = out[0]
        if head.nbytes >= _TLS_JOIN or len(out) == 1:
            return self.sock.send(head)
        parts = []
        size = 0
        for mv in out:
            if size + mv.nbytes > _TLS_JOIN:
                break
            parts.append(mv)
            size += mv.nbytes
        return self.sock.send(b"".join(parts))

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
            left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not self._wait_read.poll(left):
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
        """Read whatever the socket has; return True if anything arrived.

        The end of the stream (EOF, or an error) is raised only once every frame
        that arrived before it has been taken: a peer's last words (a REFUSED
        frame, a final OUTPUT) and its close often come in the same read.
        """
        if self._ended is not None:
            self._closed = True
            raise self._ended
        got = False
        dec = self._dec
        while True:
            target = dec.direct_target()
            try:
                if target is not None:
                    n = self.sock.recv_into(target)
                else:
                    n = self.sock.recv_into(self._rbuf)
            except _NOT_NOW:
                break
            except OSError as exc:
                ended = ChannelClosed(f"the connection broke: {exc.strerror or exc}")
                ended.__cause__ = exc
                self._end(ended)
                break
            if n == 0:
                self._end(ChannelClosed("the peer closed the connection"))
                break
            got = True
            if target is not None:
                dec.direct_filled(n)
            else:
                dec.feed(memoryview(self._rbuf)[:n])
            while (frame := dec.next_frame()) is not None:
                self._frames.append(self.conn.check_incoming(frame))
            if target is None and n < len(self._rbuf) and not self._tls:
                break  # the kernel had no more; TLS reads on until "not now" (see above)
        return got

    def _end(self, ended: ChannelClosed) -> None:
        """The stream ended: raise now, or after the frames already queued."""
        if not self._frames:
            self._closed = True
            raise ended
        self._ended = ended

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
