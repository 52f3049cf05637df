"""A session id the acceptor claimed is given back when its worker cannot start.

The acceptor claims a session id (a pool ticket's) before its first await, so
that a replayed ticket is refused while the session runs. Every step from the
claim to the worker's start must sit inside the code that gives the claim back:
here the process runs out of file descriptors at the claim (a real kernel limit,
lowered by the authorizer, the last thing before it), the acceptor cannot
duplicate the session's socket, and the same ticket must work once descriptors
are free again instead of being "already connected" forever.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator, Mapping

import pytest
from acceptor_thread import running_acceptor

from tether._errors import ConnectError
from tether.acceptor._server import POOL_SESSION_ENV
from tether.client._connect import open_session
from tether.wire import Hello

pytestmark = pytest.mark.slow

SESSION = "0123456789abcdef"
OPEN_TIMEOUT_S = 30.0


@pytest.fixture
def nofile() -> Iterator[tuple[int, int]]:
    """The descriptor limits, put back after the test whatever it did."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_a_worker_that_cannot_start_gives_its_session_id_back(nofile: tuple[int, int]) -> None:
    soft, hard = nofile
    calls = 0

    def authorize(hello: Hello) -> tuple[bool, str, Mapping[str, str]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            # No descriptor free from here on: the next one this process opens
            # (the acceptor's copy of the session's socket) fails with EMFILE.
            lowest_free = os.dup(0)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        return True, "", {POOL_SESSION_ENV: SESSION}

    with running_acceptor(authorize) as url:
        try:
            with pytest.raises(ConnectError) as failed:
                open_session(url, "ticket", timeout=OPEN_TIMEOUT_S)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # The client is told why, not just dropped.
        assert "Too many open files" in str(failed.value)
        session = open_session(url, "ticket", timeout=OPEN_TIMEOUT_S)
        try:
            assert session.session_id == SESSION
        finally:
            session.close()
    assert calls == 2
