"""sys.stdout and sys.stderr that sync the open sessions before each write.

The worker's prints arrive when the client syncs; the script's own prints
happen at once. Wrapping the streams keeps the two in program order: before the
script writes, every open session with pipelined calls outstanding syncs
(its ``barrier``), so the worker's earlier prints come out first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol


class Ordered(Protocol):
    """What a session offers the streams: sync if calls are outstanding."""

    def barrier(self) -> None: ...


def original_stream(stream: Any) -> Any:
    return getattr(stream, "_t_wrapped", stream)


class OrderedStream:
    """Wraps sys.stdout/sys.stderr: sync pending remote work before writing.

    Keeps the worker's prints (which arrive when the client syncs) and the
    script's own prints in program order, for every open session.
    """

    def __init__(self, wrapped: Any) -> None:
        self._t_wrapped = wrapped
        self._t_barriers: list[Callable[[], None]] = []

    def write(self, s: str) -> int:
        __tracebackhide__ = True  # IPython leaves Tether's frames out
        for barrier in self._t_barriers:
            barrier()
        return self._t_wrapped.write(s)  # type: ignore[no-any-return]

    def writelines(self, lines: Any) -> None:
        for barrier in self._t_barriers:
            barrier()
        self._t_wrapped.writelines(lines)

    def flush(self) -> None:
        self._t_wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t_wrapped, name)


def install_ordered_streams(session: Ordered) -> None:
    """Make sys.stdout and sys.stderr sync ``session`` before each write."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, OrderedStream):
            stream = OrderedStream(stream)
            setattr(sys, name, stream)
        if session.barrier not in stream._t_barriers:
            stream._t_barriers.append(session.barrier)


def uninstall_ordered_streams(session: Ordered) -> None:
    """Undo :func:`install_ordered_streams` for ``session`` (the streams are
    unwrapped when no session is left)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, OrderedStream):
            if session.barrier in stream._t_barriers:
                stream._t_barriers.remove(session.barrier)
            if not stream._t_barriers:
                setattr(sys, name, stream._t_wrapped)
