"""A worker's own child processes end with it.

Code a session runs may start processes of its own: a ``DataLoader`` with
``num_workers`` under the ``spawn`` start method, and multiprocessing's resource
tracker beside them. Locally they end with the script (the loader's iterator joins its
workers at interpreter exit). A worker ends with ``os._exit``, skipping that teardown
(frameworks' exit hooks can hang, and nothing of a session may outlive its client), so
they would be orphaned: a loader's workers notice their parent's death only at their next
5-second check, and the tracker only when the last of them has gone.

:func:`end_descendants` kills them (SIGKILL) just before the worker exits. A sandboxed
worker needs it less (its PID namespace dies with it), but it costs one scan of
``/proc``. Linux only; elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal

__all__ = ["descendants", "end_descendants"]


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in ``/proc``."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue  # it ended meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1:
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int | None = None) -> list[int]:
    """The processes below ``pid`` (default: this one), children first."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def end_descendants() -> None:
    """SIGKILL every process below this one (best effort, never raises)."""
    for pid in descendants():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
