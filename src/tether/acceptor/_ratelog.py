"""Log lines about dropped peers, rate-limited.

Anyone who can reach the acceptor's port can make it drop connections, as fast
as they can open them; one line each would let them fill the operator's disk
and bury the lines that matter. A token bucket lets ``burst`` lines through at
once and one more every ``interval / burst`` seconds; lines past that are
counted, and the next line that gets through says how many were suppressed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    """``warning()`` at most ``burst`` lines per ``interval`` seconds (thread-safe)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = float(burst)
        self._rate = burst / interval
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless over the rate; returns whether it was logged."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1.0:
                self._suppressed += 1
                return False
            self._tokens -= 1.0
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, suppressed)
        self._logger.warning(msg, *args)
        return True
