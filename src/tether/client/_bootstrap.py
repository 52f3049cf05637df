"""What ``tether run`` does inside the script's interpreter before the script.

Reads ``TETHER_REMOTE`` (comma-separated module names), ``TETHER_CONNECT`` and
``TETHER_TOKEN``; installs the import hook; connects on the first remoted import;
and at exit syncs the session so that a failure of the last pipelined calls
ends the script with a traceback and status 1, as it would locally.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback

from tether.client._session import Session

_session: Session | None = None


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


def _finish() -> None:
    session = _session
    if session is None:
        return
    try:
        session.finish()
    except BaseException as exc:
        traceback.print_exception(exc)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def activate() -> None:
    from tether.client._importer import install

    install(_names(), _get_session)
