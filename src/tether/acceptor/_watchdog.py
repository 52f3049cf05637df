"""The worker ends with its client, even in the middle of a long call.

The worker reads its socket only between calls, so a client that dies (or is
killed, or presses Ctrl-C and exits) while the worker runs a 20-second SVD
would leave the worker computing for nothing, holding its slice, unbilled once
the pool has ended the lease. A daemon thread waits for the kernel to report
that the peer has shut the connection (``POLLRDHUP``/``POLLHUP``, which
``poll`` reports without reading any byte the main thread still has to read)
and then ends the process at once: the session is over, and there is no one
left to answer.

A client that closes with calls still queued (``Session.close`` after
pipelined calls, then BYE) leaves bytes in the socket: while any are unread
the main thread has work the client asked for, and the watchdog waits for it
to read them (it then sees BYE or end of file and exits by itself).
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import termios
import threading
import time
from collections.abc import Callable

#: POLLRDHUP is Linux-only; elsewhere a hang-up still wakes the poll.
_RDHUP = getattr(select, "POLLRDHUP", 0)
_GONE = _RDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def watch(sock: socket.socket, on_gone: Callable[[], None]) -> threading.Thread:
    """Start the watchdog on ``sock``; ``on_gone`` runs (then the process
    exits) when the client has gone."""
    fd = sock.fileno()
    thread = threading.Thread(
        target=_watch, args=(fd, on_gone), name="tether-client-watchdog", daemon=True
    )
    thread.start()
    return thread


def _watch(fd: int, on_gone: Callable[[], None]) -> None:
    poller = select.poll()
    poller.register(fd, _RDHUP | select.POLLHUP | select.POLLERR)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        except OSError:
            break
        if any(ev & _GONE for _, ev in events):
            if _unread(fd) > 0:
                time.sleep(0.05)  # the main thread has frames to run yet
                continue
            break
    try:
        on_gone()
    finally:
        os._exit(0)


def _unread(fd: int) -> int:
    """Bytes received on ``fd`` that nobody has read yet (0 if unknown)."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]
