"""What ``tether run`` does inside the script's interpreter before the script.

Reads ``TETHER_REMOTE`` (comma-separated module names), ``TETHER_CONNECT`` and
``TETHER_TOKEN``; installs the import hook; connects on the first remoted import;
and at exit syncs the session so that a failure of the last pipelined calls
ends the script with a traceback and status 1, as it would locally.

When the command ``tether run`` starts is a Python interpreter, that process
(``TETHER_CONNECT_NOW``, which it removes from its environment so its own
children connect lazily) opens the session before the script's first line: a
remoted module the worker cannot import (a typo such as ``--remote troch``) or an
acceptor that cannot be reached then ends the run with one line, before the
script does anything on the wrong machine. With ``TETHER_VERBOSE`` it says where the session runs.
Under a shell (``bash -c "pip list; python train.py"``) the script connects at
its first remoted import, so that no other interpreter spends a pool ticket.

Failures of the connection itself (unreachable, refused, the worker lost or
the session ended by the pool or an admin) end the script with one line
``tether: error: ...`` instead of a traceback of Tether's internals.

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
from collections.abc import Callable, Iterable
from typing import Any

from tether.client._session import Session

_session: Session | None = None
#: Opens the script's session: ``tether.connect``, handed in by :func:`activate`
#: (the client sits below ``tether._api``, which composes it with an embedded acceptor).
_connect: Callable[[Iterable[str]], Session] | None = None
_CLIENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _get_session() -> Session:
    global _session
    if _session is None:
        if _connect is None:
            raise RuntimeError("tether.client._bootstrap.activate() was not called")
        _session = _connect(_names())
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
        line = one_line(exc)
        if line is not None:
            sys.stdout.flush()
            print(line, file=sys.stderr)
        else:
            traceback.print_exception(without_client_frames(exc))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def one_line(exc: BaseException) -> str | None:
    """The one line to show for an uncaught connection failure, or None for an
    error that deserves its traceback (the script's own, or remote code's)."""
    from tether._errors import (
        AuthenticationError,
        ConnectError,
        DeviceLost,
        ProtocolVersionMismatch,
        RemoteModuleNotFound,
    )
    from tether.transport import ChannelClosed

    if isinstance(exc, ChannelClosed):
        where = f" of session {_session.session_id} on {_session.address}" if _session else ""
        return f"tether: error: lost the connection to the worker{where} ({exc}; {_at(exc)})"
    if isinstance(exc, DeviceLost):
        return f"tether: error: {exc} ({_at(exc)})"
    if isinstance(
        exc, ConnectError | AuthenticationError | ProtocolVersionMismatch | RemoteModuleNotFound
    ):
        return f"tether: error: {exc}"
    return None


def _at(exc: BaseException) -> str:
    """Where the script was when ``exc`` reached it: ``at FILE:LINE``."""
    last = None
    tb = exc.__traceback__
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_TETHER_DIR):
            last = tb
        tb = tb.tb_next
    if last is None:
        return "before the script's first line"
    return f"at {last.tb_frame.f_code.co_filename}:{last.tb_lineno}"


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
        line = one_line(value)
        if line is not None:
            sys.stdout.flush()
            print(line, file=sys.stderr)
            return
        value = without_client_frames(value)
        previous(etype, value, value.__traceback__)

    return hook


def activate(connect: Callable[[Iterable[str]], Session]) -> None:
    """Make the remoted modules import from a worker; ``connect(remote)`` opens
    the session, on the first remoted import (or now, see the module docstring)."""
    global _connect
    from tether.client._importer import install

    _connect = connect

    install(_names(), _get_session)
    sys.excepthook = _excepthook(sys.excepthook)
    verbose = os.environ.pop("TETHER_VERBOSE", "")
    if os.environ.pop("TETHER_CONNECT_NOW", ""):
        _connect_now(verbose=bool(verbose))


def _connect_now(*, verbose: bool) -> None:
    """Open the session now (see the module docstring); one line and exit 1 on failure.

    This runs inside ``sitecustomize``, where an exception would only print
    "Error in sitecustomize" and let the script run anyway: hence os._exit.
    """
    from tether._errors import TetherError

    try:
        session = _get_session()
    except TetherError as exc:
        print(f"tether: error: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    if verbose:
        print(describe(session), file=sys.stderr, flush=True)


def describe(session: Session) -> str:
    """One line: where ``session`` runs (acceptor, worker pid, device)."""
    from tether.client._connect import worker_info

    info = worker_info(session)
    names = ", ".join(_names()) or "nothing"
    details = (
        f"session {session.session_id}, worker pid {info.get('pid', '?')}, "
        f"device {info.get('device') or '?'}"
    )
    if os.environ.get("TETHER_LOCAL_ACCEPTOR"):
        return (
            f"tether: {names} runs in a local worker that `tether run` started on this machine "
            f"(at {session.address}; give --connect or --pool for another): {details}"
        )
    return f"tether: {names} runs on the acceptor at {session.address}: {details}"
