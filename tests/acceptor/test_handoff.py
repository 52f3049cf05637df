"""The hand-off of a session's socket from the acceptor to its worker (issue 11).

After starting a worker, the acceptor still holds a copy of the session's
socket until it aborts its transport. It once kept reading in that window, and
what it read -- the client's first CALL, sent as soon as WELCOME arrived -- was
lost: client and worker then waited for each other forever. Widening the window
(``handoff_delay``) made it happen every time; the first call must survive it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from acceptor_thread import running_acceptor

from tether.acceptor._server import token_authorizer

pytestmark = pytest.mark.slow

TOKEN = "handoff-token"
CLIENT_TIMEOUT_S = 60

SCRIPT = textwrap.dedent(
    """
    import sys, tether
    with tether.connect(sys.argv[1], token=sys.argv[2]) as s:
        print(s.import_module("math").factorial(6))  # the first call, sent right after WELCOME
        print(s.import_module("os").getpid() > 0)
    """
)


def test_the_first_call_survives_a_slow_hand_off() -> None:
    with running_acceptor(token_authorizer(TOKEN), handoff_delay=2.0) as url:
        # A separate client process, so a lost call is a bounded timeout here.
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, url, TOKEN],
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["720", "True"]
