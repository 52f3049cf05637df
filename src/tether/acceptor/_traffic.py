"""Bytes each session moved over its connection, and the calls it made.

A session's traffic never passes through the acceptor (its socket is handed to
the worker), so the acceptor cannot count it; the kernel does. The acceptor
keeps a duplicate of each session's TCP socket and reads ``TCP_INFO``'s
``tcpi_bytes_acked`` (bytes sent and acknowledged by the client) and
``tcpi_bytes_received`` (Linux 4.1+). Over ``tls://`` the socket is the
acceptor's side of the relay, so the figures include TLS's overhead. A
``unix://`` session has no such counters: it reads None.

The duplicate costs the connection nothing: the worker's end of it closes when
the worker exits, and :meth:`Traffic.end` closes ours right after.

Calls are counted by the worker (its frames never reach the acceptor) in eight
bytes of shared memory: the acceptor makes a memfd per session, the worker maps
it (``--calls-fd``) and stores there the number of CALL frames it has served
each time it is about to wait for the next one, the acceptor reads it. A
session can only misreport its own count.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
import threading
from dataclasses import dataclass

__all__ = ["Traffic", "TrafficFigures", "attach_call_counter", "tcp_bytes"]

# struct tcp_info (linux/tcp.h): 8 u8 fields, 24 u32 fields, then
# tcpi_pacing_rate, tcpi_max_pacing_rate, tcpi_bytes_acked, tcpi_bytes_received.
_BYTES_ACKED_AT = 8 + 24 * 4 + 2 * 8
_TCP_INFO_LEN = _BYTES_ACKED_AT + 16


def tcp_bytes(sock: socket.socket) -> tuple[int, int] | None:
    """``(sent, received)`` bytes of a TCP socket, or None where not reported."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN:  # a kernel older than 4.1
        return None
    sent, received = struct.unpack_from("=QQ", raw, _BYTES_ACKED_AT)
    return int(sent), int(received)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficFigures:
    """One consistent reading: per live session, and totals that include the
    sessions that ended (so they never go down between two readings)."""

    sessions: dict[str, tuple[int, int]]  # session: (sent, received) bytes
    calls: dict[str, int]  # session: CALL frames served
    sent: int
    received: int
    total_calls: int


class Traffic:
    """Per-session byte counters, plus the totals of sessions that ended.

    Thread-safe: the acceptor's loop calls :meth:`watch` and :meth:`end`, a
    scrape thread reads :meth:`snapshot`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._calls: dict[str, mmap.mmap] = {}
        self._calls_fd: dict[str, int] = {}
        self.ended_calls = 0
        self.ended_sent = 0
        self.ended_received = 0

    def watch(self, session: str, sock: socket.socket) -> None:
        """Count ``session``'s bytes on ``sock`` (a duplicate is kept; never raises)."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        with contextlib.suppress(OSError):
            dup = sock.dup()
            with self._lock:
                self._socks[session] = dup

    def call_counter_fd(self, session: str) -> int | None:
        """A new fd for ``session``'s call counter, for its worker to inherit
        (``--calls-fd``); None where memfds are not available."""
        try:
            fd = os.memfd_create(f"tether-calls-{session}", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            return None
        try:
            os.ftruncate(fd, 8)
            shared = mmap.mmap(fd, 8)
        except OSError:
            os.close(fd)
            return None
        with self._lock:
            self._calls[session] = shared
            self._calls_fd[session] = fd
        return fd

    def handed_over(self, session: str) -> None:
        """The worker started (or failed to): close our copy of its counter's fd."""
        with self._lock:
            fd = self._calls_fd.pop(session, None)
        if fd is not None:
            os.close(fd)

    def end(self, session: str) -> None:
        """Fold the session's final figures into the totals and close our duplicate."""
        self.handed_over(session)
        with self._lock:
            shared = self._calls.pop(session, None)
            if shared is not None:
                self.ended_calls += struct.unpack_from("=Q", shared)[0]
                shared.close()
            sock = self._socks.pop(session, None)
            if sock is None:
                return
            figures = tcp_bytes(sock)
            sock.close()
            if figures is not None:
                self.ended_sent += figures[0]
                self.ended_received += figures[1]

    def snapshot(self) -> TrafficFigures:
        """Every figure, read under one lock."""
        with self._lock:
            out = {}
            for session, sock in self._socks.items():
                figures = tcp_bytes(sock)
                if figures is not None:
                    out[session] = figures
            calls = {s: int(struct.unpack_from("=Q", m)[0]) for s, m in self._calls.items()}
            return TrafficFigures(
                sessions=out,
                calls=calls,
                sent=self.ended_sent + sum(t[0] for t in out.values()),
                received=self.ended_received + sum(t[1] for t in out.values()),
                total_calls=self.ended_calls + sum(calls.values()),
            )

    def close(self) -> None:
        with self._lock:
            for sock in self._socks.values():
                sock.close()
            self._socks.clear()


def attach_call_counter(fd: int) -> memoryview | None:
    """The worker's side of :meth:`Traffic.call_counter_fd`: one unsigned 64-bit
    slot to store the count in (``counter[0] = n``), or None if ``fd`` cannot be
    mapped. Closes ``fd``."""
    try:
        shared = mmap.mmap(fd, 8)
    except (OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return memoryview(shared).cast("Q")
