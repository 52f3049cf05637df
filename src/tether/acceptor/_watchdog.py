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

A client that is stopped (SIGSTOP) or cut off (a link down) hangs up nothing.
The same thread therefore runs the session's liveness
(:class:`~tether.transport._heart.Heart`): it wakes every tick, says "still
here" (BEAT) when the worker has been quiet, which it can do however long the
main thread's call runs, and ends the worker the same way once the client has
been silent for a whole window.
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

from tether.transport._heart import Heart

#: POLLRDHUP is Linux-only; elsewhere a hang-up still wakes the poll.
_RDHUP = getattr(select, "POLLRDHUP", 0)
_GONE = _RDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL


def watch(
    sock: socket.socket, on_gone: Callable[[], None], heart: Heart | None = None
) -> threading.Thread:
    """Start the watchdog on ``sock``; ``on_gone`` runs (then the process
    exits) when the client has gone, or, with a ``heart``, has been silent
    for its window (the heart's ``on_silent`` runs first)."""
    fd = sock.fileno()
    thread = threading.Thread(
        target=_watch, args=(fd, on_gone, heart), name="tether-client-watchdog", daemon=True
    )
    thread.start()
    return thread


def _work_left(fd: int, heart: Heart | None) -> bool:
    """Whether the hung-up client left frames the main thread has yet to run.
    BEATs it sent while the main thread was busy in a call are no work."""
    if _unread(fd) <= 0:
        return False
    return heart is None or not heart.channel.unread_is_only_beats()


def _watch(fd: int, on_gone: Callable[[], None], heart: Heart | None) -> None:
    poller = select.poll()
    poller.register(fd, _RDHUP | select.POLLHUP | select.POLLERR)
    timeout_ms = None if heart is None else max(1, int(heart.tick * 1000))
    while True:
        try:
            events = poller.poll(timeout_ms)
        except InterruptedError:
            continue
        except OSError:
            break
        if any(ev & _GONE for _, ev in events):
            if _work_left(fd, heart):
                time.sleep(0.05)  # the main thread has frames to run yet
                continue
            break
        if heart is not None and not heart.beat_or_judge():
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
