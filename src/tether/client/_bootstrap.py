"""What ``tether run`` does inside the script's interpreter before the script.

Reads ``TETHER_REMOTE`` (comma-separated module names), ``TETHER_CONNECT`` and
``TETHER_TOKEN``; installs the import hook; connects on the first remoted import;
and at exit syncs the session so that a failure of the last pipelined calls
ends the script with a traceback and status 1, as it would locally.

An uncaught error's traceback leaves out Tether's own client frames (the proxy
and the session between the script's line and the raise): it shows the
script's frames, then the worker's, as the script alone would.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import traceback
import types
from typing import Any

from tether.client._session import Session

_session: Session | None = None
_CLIENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _get_session() -> Session:
    global _session
    if _session is None:
        from tether._api import connect

        names = _names()
        _session = connect(remote=names)
        atexit.register(_finish)
    return _session


def _names() -> list[str]:
    return [n.strip() for n in os.environ.get("TETHER_REMOTE", "").split(",") if n.strip()]


#: Set when the script ends with Ctrl-C: the work it was waiting for is abandoned,
#: as it would be locally, so the session is dropped, not synced.
_interrupted = False


def _finish() -> None:
    session = _session
    if session is None:
        return
    if _interrupted:
        session.abort()
        return
    try:
        session.finish()
    except BaseException as exc:
        traceback.print_exception(without_client_frames(exc))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def without_client_frames(exc: BaseException) -> BaseException:
    """``exc`` (and the exceptions chained to it) with the frames of Tether's
    client code cut out of their tracebacks; a traceback of nothing else is
    left as it is."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = _trim(e.__traceback__)
        todo += [e.__cause__, e.__context__]
    return exc


def _trim(tb: types.TracebackType | None) -> types.TracebackType | None:
    kept = []
    t = tb
    while t is not None:
        if not t.tb_frame.f_code.co_filename.startswith(_CLIENT_DIR):
            kept.append(t)
        t = t.tb_next
    if not kept:
        return tb
    for a, b in itertools.pairwise(kept):
        a.tb_next = b
    kept[-1].tb_next = None
    return kept[0]


def _excepthook(previous: Any) -> Any:
    def hook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        global _interrupted
        if isinstance(value, KeyboardInterrupt):
            _interrupted = True
        value = without_client_frames(value)
        previous(etype, value, value.__traceback__)

    return hook


def activate() -> None:
    from tether.client._importer import install

    install(_names(), _get_session)
    sys.excepthook = _excepthook(sys.excepthook)
