"""Liveness of a session: when to say "still here", and when the peer is gone.

Theory of operation
-------------------
A peer that dies closes its socket and the kernel says so at once. A peer that
is stopped (SIGSTOP, a frozen VM) or cut off (a link down, a host gone) says
nothing: the kernel keeps the connection, and each end would wait for the
other for ever. So each end watches two counters of its channel, bytes
*received* and bytes *sent*, and how many received bytes are still *unread*:

* It sends a BEAT when it has sent nothing for ``interval`` seconds. A link
  busy with frames carries no BEAT at all: the hot path pays nothing.
* It calls the peer *silent* when nothing has arrived for ``window`` seconds.
  An end that is not reading (its main thread computing, or writing a large
  frame) still sees the peer's BEATs arrive: the count of *unread* bytes
  grows, and that counts as hearing from the peer. Many unread bytes (a
  ``backlog``: a quarter of the socket's receive buffer) stop the clock: a
  peer whose write is stuck behind them cannot send a BEAT, and is not
  silent; the end that is not reading cannot blame it for a silence it makes
  itself. A few unread bytes that do not grow (the BEATs a peer sent before it
  was stopped) stop nothing.

The peer's ``interval`` is a quarter of the ``window`` this end judges it by,
so a live peer is heard from several times in every window, however the
ticks fall. Both windows are agreed in the handshake: the client names the
window it judges the worker by (``Hello.info["liveness"]``), the worker the
one it judges the client by (``Welcome.info["liveness"]``); an end that names
none (an older peer) gets no BEAT and is never judged.

:class:`Pulse` is the pure policy: observations and a time in, a decision out;
no clock, no socket. ``tether.transport._heart`` runs it against a channel.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final

#: The window an end judges its peer by unless told otherwise (seconds).
DEFAULT_WINDOW_S: Final = 20.0
#: No window is shorter (a loaded machine must not look dead) ...
MIN_WINDOW_S: Final = 1.0
#: ... or longer: a stopped client must not hold its worker for ever.
MAX_WINDOW_S: Final = 300.0
#: BEATs come this many times in each window of the peer's.
BEATS_PER_WINDOW: Final = 4


class Decision(enum.Enum):
    NOTHING = "nothing"
    BEAT = "beat"  # send a BEAT now
    SILENT = "silent"  # the peer has been silent for a whole window: end the session


def clamp_window(seconds: float) -> float:
    """``seconds`` as a window: between :data:`MIN_WINDOW_S` and :data:`MAX_WINDOW_S`."""
    return min(MAX_WINDOW_S, max(MIN_WINDOW_S, seconds))


def parse_window(value: Any) -> float | None:
    """The window a peer named in its handshake info, clamped; None if it named
    none or something that is no positive finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return clamp_window(float(value))


class Pulse:
    """The liveness policy of one end; see the module docstring.

    ``window`` is how long the peer may stay silent (None: never judged);
    ``interval`` how long this end may stay quiet before it sends a BEAT;
    ``backlog`` how many unread bytes mean a peer's write stuck behind them.
    Feed :meth:`observe` with the channel's counters at any times, in
    non-decreasing order; it returns what to do. Once it has said SILENT it
    says so again on every later call.
    """

    __slots__ = (
        "_heard_at",
        "_received",
        "_said_at",
        "_sent",
        "_silent",
        "_unread",
        "backlog",
        "interval",
        "window",
    )

    def __init__(
        self, *, window: float | None, interval: float, now: float, backlog: int = 64 * 1024
    ) -> None:
        if window is not None and not window > 0:
            raise ValueError(f"window must be positive or None, not {window!r}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self.window = window
        self.interval = interval
        self.backlog = backlog
        self._unread = 0
        self._heard_at = now
        self._said_at = now
        self._received = 0
        self._sent = 0
        self._silent = False

    @property
    def tick(self) -> float:
        """How often to observe: often enough to beat on time and to notice
        silence within an eighth of the window."""
        tick = self.interval / 2
        if self.window is not None:
            tick = min(tick, self.window / 8)
        return tick

    def silent_for(self, now: float) -> float:
        """Seconds since the peer was last heard from (or excused)."""
        return max(0.0, now - self._heard_at)

    def observe(self, now: float, *, received: int, sent: int, unread: int) -> Decision:
        """What to do at ``now``, given the channel's counters.

        ``received`` and ``sent`` count reads and writes that moved bytes (any
        change means traffic); ``unread`` is how many received bytes wait to be
        read (the kernel's count).
        """
        if self._silent:
            return Decision.SILENT
        if received != self._received or unread != self._unread or unread >= self.backlog:
            self._received = received
            self._unread = unread
            self._heard_at = now
        if sent != self._sent:
            self._sent = sent
            self._said_at = now
        if self.window is not None and now - self._heard_at >= self.window:
            self._silent = True
            return Decision.SILENT
        if now - self._said_at >= self.interval:
            # Not marked as said: only a write that moves the counter is. A
            # BEAT that could not go (the channel busy writing) is tried again
            # at the next tick.
            return Decision.BEAT
        return Decision.NOTHING
