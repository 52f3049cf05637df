"""Workers die with their acceptor (issue 11).

An orphaned worker would go on computing on a slice that the pool gives to
someone else once the acceptor is gone. kill -9 of a real ``tether serve``
must take every process it started with it, sandboxed (bwrap's
--die-with-parent and the PID namespace) or not (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from serve_process import alive, descendants, sandbox_skip_reason, serving, worker_pid

import tether
from tether.acceptor._sandbox import _sweep_stale_state

pytestmark = pytest.mark.slow

#: Generous: the kernel delivers the death signal at once; this is a bound on a loaded CI box.
GONE_WITHIN_S = 10.0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            [],
            id="sandboxed",
            marks=pytest.mark.skipif(
                sandbox_skip_reason() is not None, reason=str(sandbox_skip_reason())
            ),
        ),
        pytest.param(["--no-sandbox"], id="no-sandbox"),
    ],
)
def test_kill_9_of_the_acceptor_takes_its_workers(tmp_path: Path, args: list[str]) -> None:
    with serving(tmp_path, args) as served:
        sessions = [tether.connect(served.url, token=served.token) for _ in range(2)]
        try:
            for s in sessions:  # both workers are up and serving
                assert s.import_module("math").factorial(4) == 24
            workers = [worker_pid(s.session_id) for s in sessions]
            started = descendants(served.proc.pid)
            assert set(workers) <= set(started)
            os.kill(served.proc.pid, signal.SIGKILL)
            served.proc.wait(timeout=15)
            deadline = time.monotonic() + GONE_WITHIN_S
            while any(alive(p) for p in started) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = [p for p in started if alive(p)]
            assert not left, f"processes outlived their acceptor: {left}"
            # What the dead acceptor left on disk, the next one removes.
            _sweep_stale_state()
            assert not list(Path(tempfile.gettempdir()).glob(f"tether-cells-{served.proc.pid}-*"))
        finally:
            for s in sessions:
                with contextlib.suppress(Exception):
                    s.close()
