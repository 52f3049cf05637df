"""A blocking, frame-oriented channel over one stream socket.

(Over 400 lines: one class whose send, receive, spin and TLS paths share one buffer
discipline, measured as a whole.)

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

Liveness (see ``tether.wire._liveness``): the channel counts the reads and
writes that moved bytes, drops the peer's BEAT frames as they arrive (the
layers above never see one), and lets another thread send a BEAT or a last
word without waiting (:meth:`send_nowait`) and end the channel
(:meth:`expire`), which wakes a ``recv`` or ``flush`` blocked in ``poll``.
Writes are serialised by a lock that the owner's thread holds while it
queues or writes, so a BEAT never lands inside another frame; the other
thread only ever tries it, so it never waits behind a write stuck on a
stalled peer. A TLS socket's reads take the lock too (an SSL object must not
read and write in two threads at once); a plain socket's reads do not.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import math
import os
import select
import socket
import ssl
import termios
import threading
import time
from collections import deque
from collections.abc import Sequence

from tether._errors import ProtocolError, TetherError
from tether.wire import DEFAULT_MAX_FRAME, Connection, Frame, FrameDecoder, Kind, Role, State
from tether.wire._frames import Buffer, encode_frame, frame_bytes
from tether.wire._messages import check_beat, encode_beat

_READ_CHUNK = 256 * 1024
_SENDMSG_MAX_PIECES = 64
_RESPIN = 32  # waits without spinning before a spin is tried again
_MEAN_WEIGHT = 1 / 8  # of each wait in the running means Channel.spins compares
#: TLS only: pieces smaller than this are joined into one write (one record);
#: a TLS record holds at most 16 KiB of data.
_TLS_JOIN = 16 * 1024
_NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_POLL_READ = select.POLLIN | select.POLLPRI
_BEAT = int(Kind.BEAT)
_BEAT_BYTES = frame_bytes(encode_beat())


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
        # Per kind of wait (see recv): the running means (_MEAN_WEIGHT) of those
        # that spun first and of those that slept at once, and how many have slept
        # without trying a spin since.
        self._spun_mean = [0.0, 0.0]
        self._slept_mean = [math.inf, math.inf]
        self._missed = [0, 0]
        self._closed = False
        self._ended: ChannelClosed | None = None  # raised once the frames before it are taken
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._lock = threading.RLock()  # writes (and TLS reads): see the module docstring
        #: Reads and writes that moved bytes (liveness counts them).
        self.received = 0
        self.sent = 0
        self._expired: str | None = None
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
        pieces = encode_frame(kind, flags, seq, meta, buffers, max_frame=self.max_frame)
        with self._lock:  # the state check and the queueing, as one (see send_nowait)
            self.conn.check_outgoing(kind)
            self._queue(pieces)

    def send_pieces(self, pieces: Sequence[Buffer]) -> None:
        with self._lock:
            self._queue(pieces)

    def _queue(self, pieces: Sequence[Buffer]) -> None:
        """Append one frame's pieces to the queue (lock held)."""
        for p in pieces:
            mv = memoryview(p)
            if mv.ndim != 1 or mv.format != "B":
                mv = mv.cast("B")
            if mv.nbytes:
                self._out.append(mv)
                self._out_bytes += mv.nbytes

    def send_nowait(self, kind: int, flags: int, seq: int, meta: Buffer) -> bool:
        """Queue one small frame and write what can be written without waiting,
        from any thread; False (nothing queued) if the channel is busy writing
        in another thread, closed, or the state does not allow ``kind``.

        What does not fit in the socket now stays queued, ahead of anything
        queued later, and goes with the next write.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed or self._expired is not None:
                return False
            try:
                self.conn.check_outgoing(kind)
            except ProtocolError:
                return False
            self._queue(encode_frame(kind, flags, seq, meta, max_frame=self.max_frame))
            with contextlib.suppress(OSError):
                self._write_nowait()
            return True
        finally:
            self._lock.release()

    def _write_nowait(self) -> None:
        """Write from the queue until the socket says "not now" (lock held)."""
        out = self._out
        while out:
            try:
                if self._tls:
                    n = self._send_tls()
                else:
                    n = self.sock.sendmsg(
                        [out[i] for i in range(min(len(out), _SENDMSG_MAX_PIECES))]
                    )
            except _NOT_NOW:
                return
            self._consumed(n)

    def _consumed(self, n: int) -> None:
        """``n`` bytes of the queue were written (lock held)."""
        if n:
            self.sent += 1
        self._out_bytes -= n
        out = self._out
        while n:
            head = out[0]
            if n >= head.nbytes:
                n -= head.nbytes
                out.popleft()
            else:
                out[0] = head[n:]
                n = 0

    @property
    def pending_output(self) -> int:
        """Bytes queued but not yet written."""
        return self._out_bytes

    def flush(self) -> None:
        """Write everything queued; reads incoming frames meanwhile if blocked."""
        out = self._out
        if not out:
            return
        with self._lock:
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
                self._consumed(n)
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
    def recv(self, timeout: float | None = None, *, alone: bool = False) -> Frame:
        """Flush, then return the next frame, waiting up to ``timeout`` seconds.

        ``alone``: the caller waits for the answer to a request with no queued
        work ahead of it (a round trip), not for work of unknown length. Such
        waits decide whether to spin by one another only: a long wait behind
        queued work says nothing of the next round trip (see :meth:`spins`).

        Raises TimeoutError when the timeout passes, ChannelClosed on EOF.
        """
        self.flush()
        if self._frames:
            return self._frames.popleft()
        # No read before the spin or the poll: a frame has seldom come by now (the
        # peer has just been sent the request), and a read that finds nothing is a
        # system call more than a poll that finds something.
        kind = 1 if alone else 0
        start = time.perf_counter()
        spun = self.spins(kind)
        if spun:
            self._missed[kind] = 0
            until = start + self._spin
            while time.perf_counter() < until:
                if self._read_available() and self._frames:
                    self._took(kind, True, time.perf_counter() - start)
                    return self._frames.popleft()
        else:
            self._missed[kind] += 1
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._frames:
            left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not self._wait_read.poll(left):
                raise TimeoutError("no frame from the peer in time")
            self._read_available()
        self._took(kind, spun, time.perf_counter() - start)
        return self._frames.popleft()

    def _took(self, kind: int, spun: bool, seconds: float) -> None:
        """A wait of ``kind`` that spun first (or slept at once) took ``seconds``."""
        mean = self._spun_mean if spun else self._slept_mean
        old = mean[kind]
        if old == math.inf or (spun and seconds <= self._spin < old):
            mean[kind] = seconds  # the first, or a spin that paid again: start afresh
        else:
            mean[kind] = old + (seconds - old) * _MEAN_WEIGHT

    def spins(self, kind: int) -> bool:
        """Whether the next wait of ``kind`` (1: alone, 0: any other) spins first.

        Spin only while spinning pays: waits of that kind that spun are answered
        within the spin on average (both ends stay awake, so a round trip costs
        no wake-up), and sooner than those that slept. When answers take longer
        (real work), or when sleeping answers sooner (a busy machine, where the
        spin takes the CPU the peer needs: a null call's waits took 150-190 us
        spinning against 60-95 sleeping while another process kept one of two
        vCPUs busy), sleep at once, and try spinning again only every _RESPIN
        waits; a spin that pays then starts the mean of spun waits afresh. Only
        waits that spun say whether spinning pays: a quick answer to a wait that
        slept says nothing of one that spins.
        """
        if not self._spin:
            return False
        if self._missed[kind] >= _RESPIN:
            return True
        spun = self._spun_mean[kind]
        return spun <= self._spin and spun <= self._slept_mean[kind]

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
        if self._tls:
            with self._lock:
                return self._read_some()
        return self._read_some()

    def _read_some(self) -> bool:
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
                ended = ChannelClosed(
                    self._expired or f"the connection broke: {exc.strerror or exc}"
                )
                ended.__cause__ = exc
                self._end(ended)
                break
            if n == 0:
                self._end(ChannelClosed(self._expired or "the peer closed the connection"))
                break
            got = True
            self.received += 1
            if target is not None:
                dec.direct_filled(n)
            else:
                dec.feed(memoryview(self._rbuf)[:n])
            while (frame := dec.next_frame()) is not None:
                if frame.kind == _BEAT:  # liveness only: counted above, not kept
                    if self.conn.state is not State.CLOSED:  # one may follow our BYE
                        self.conn.check_incoming(frame)
                    check_beat(frame)
                    continue
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
        why = self._expired or f"the connection broke: {exc.strerror or exc}"
        raise ChannelClosed(why) from exc

    def unread(self) -> int:
        """Bytes the kernel has received on this socket that nobody has read
        yet (0 when it cannot say). Any thread."""
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, buf, True)
        except (OSError, ValueError):
            return 0
        return buf[0]

    def unread_is_only_beats(self) -> bool:
        """Whether every byte waiting in the socket belongs to BEAT frames (a
        last one may be cut short), so that no frame the peer sent is left to
        run. Any thread; False when it cannot tell (TLS, a read under way, a
        frame half read). Reads nothing: it peeks."""
        if self._tls or not self._dec.at_boundary():
            return False
        before = self.received
        n = self.unread()
        if n <= 0:
            return False
        try:
            data = self.sock.recv(n, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return False
        if self.received != before or not self._dec.at_boundary():
            return False  # the owner's thread read meanwhile: what we saw may be mid-frame
        beat = _BEAT_BYTES
        whole = len(data) - len(data) % len(beat)
        tail = data[whole:]
        return data[:whole] == beat * (whole // len(beat)) and beat.startswith(tail)

    def expire(self, reason: str) -> None:
        """End the channel from any thread: ``recv`` and ``flush``, waiting or
        not, raise ChannelClosed(``reason``) from now on. The socket is shut
        down (not closed: its owner's thread may be using the fd), so a peer
        that comes back sees the end of the stream."""
        if self._expired is None:
            self._expired = reason
        with contextlib.suppress(OSError, ValueError):
            # The plain socket's shutdown, also for TLS: ssl.SSLSocket's would
            # drop the SSL object under a thread that may be reading through it.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    @property
    def expired(self) -> str | None:
        """Why :meth:`expire` ended the channel (None if it did not)."""
        return self._expired

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        return self.sock.fileno()
