"""``tether.connect()`` with no URL stops the acceptor it started when opening fails.

The embedded acceptor is a thread with a listening socket. Here its worker
cannot start (a broken ``PYTHONHOME`` in the environment the worker inherits),
so the session never opens: ``connect()`` must raise with the acceptor's
thread ended and its socket closed, not leave them running in the caller's
process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import tether

pytestmark = pytest.mark.slow


def test_a_failed_open_stops_the_embedded_acceptor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TETHER_CONNECT", raising=False)
    # The worker is `python -m tether.acceptor._worker` with this environment:
    # with no standard library to be found, it dies before its welcome.
    monkeypatch.setenv("PYTHONHOME", str(tmp_path))
    fds_before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(tether.ConnectError):
        tether.connect()
    assert [t.name for t in threading.enumerate() if t.name == "tether-acceptor"] == []
    assert set(os.listdir("/proc/self/fd")) <= fds_before
