"""Runs a session's liveness policy (``tether.wire._liveness``) on a channel.

A :class:`Heart` observes its channel's counters and does what the policy
says: send a BEAT without waiting (never behind a write that the channel's own
thread has under way), or, once the peer has been silent for a whole window,
call ``on_silent`` with the seconds of silence. It must run in a thread that
does not wait for the session's calls: the client runs it in a thread of its
own (:meth:`Heart.start`), the worker in its watchdog (``tether.acceptor.
_watchdog``), so that a worker computing for a minute still says it is there,
and a client whose script computes locally, or sits at a notebook prompt, too.

Python code must hold the GIL to run, so an end whose main thread stays in one
C call that keeps the GIL (rare: torch and numpy release it while they
compute) for longer than the peer's window goes unheard; the window is
configurable for such code (``TETHER_LIVENESS_S``, see docs/remoting.md).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from tether.transport._channel import Channel
from tether.wire import Kind
from tether.wire._liveness import Decision, Pulse

_BEAT = int(Kind.BEAT)


class Heart:
    """One end's liveness: BEATs when quiet, ``on_silent`` when the peer is.

    ``window`` is how long the peer may be silent (None: never judged, but
    BEATs still go, for the peer's sake); ``interval`` how long this end may
    be quiet before it sends a BEAT. ``on_silent(seconds)`` runs once, in the
    heart's thread; after it the heart stops.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        window: float | None,
        interval: float,
        on_silent: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.window = window
        self.interval = interval
        self.on_silent = on_silent
        self._clock = clock
        # The clocks start at the first observation, not here: the worker makes
        # its heart before it has welcomed the client.
        self._pulse: Pulse | None = None
        self.tick = Pulse(window=window, interval=interval, now=0.0).tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat_or_judge(self) -> bool:
        """One observation; returns False once the peer was found silent (and
        ``on_silent`` has run) or the channel is gone."""
        channel = self.channel
        if channel.closed or channel.expired is not None:
            return False
        now = self._clock()
        pulse = self._pulse
        if pulse is None:
            pulse = self._pulse = Pulse(
                window=self.window, interval=self.interval, now=now, backlog=self._backlog()
            )
        decision = pulse.observe(
            now, received=channel.received, sent=channel.sent, unread=channel.unread()
        )
        if decision is Decision.BEAT:
            channel.send_nowait(_BEAT, 0, 0, b"")
        elif decision is Decision.SILENT:
            self.on_silent(pulse.silent_for(now))
            return False
        return True

    def _backlog(self) -> int:
        """A quarter of the socket's receive buffer: unread bytes that many are
        a peer's write stuck behind this end (see wire/_liveness.py)."""
        try:
            size = self.channel.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            size = 128 * 1024
        return max(4096, size // 4)

    # -- a thread of its own (the client) ------------------------------------------
    def start(self, name: str = "tether-heart") -> None:
        """Run :meth:`beat_or_judge` every tick in a daemon thread until
        :meth:`stop` or a silent peer."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = self.tick
        while not self._stop.wait(tick):
            if not self.beat_or_judge():
                return

    def stop(self) -> None:
        """Stop the thread (at once) and wait for it; safe from any thread,
        also the heart's own (from ``on_silent``) and when never started."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
