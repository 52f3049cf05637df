"""Sessions whose sockets get file descriptor numbers above 1024 (issue 11).

``select(2)`` cannot watch such fds (Python raises ``ValueError: filedescriptor
out of range``). A client with many files open gets one for its session; a
worker gets one when its acceptor holds many connections, since the worker
inherits the socket under the acceptor's fd number. Both are run for real here:
a ``tether run`` script that opens 1,100 files before its first remote call,
and a ``tether serve`` holding 1,100 idle unauthenticated connections while a
session starts and runs. The fd limit is raised as a user or operator would
(``ulimit -n``); where the hard limit forbids it the tests skip and say so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.transport import parse_address

from .servehelp import child_env, tether_serve

pytestmark = pytest.mark.slow

MANY = 1100
BATCH = 50
LIMIT = 4096
TIMEOUT_S = 120.0


@contextlib.contextmanager
def raised_fd_limit() -> Iterator[None]:
    """Raise this process's soft fd limit to LIMIT (children inherit it), then restore."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < LIMIT:
        pytest.skip(f"the hard fd limit is {hard}; these tests need {LIMIT} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, LIMIT), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SCRIPT = f"""\
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, hard))
files = [os.open(os.devnull, os.O_RDONLY) for _ in range({MANY})]
import numpy as np  # the session opens here: its socket's fd is above {MANY}
a = np.arange(200_000, dtype=np.int64)
print(int(a.sum()), int((a * 2).sum()), type(np).__name__, max(files) >= {MANY})
"""


def test_a_script_with_1100_open_files_runs_a_session(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < LIMIT:
        pytest.skip(f"the hard fd limit is {hard}; this test needs {LIMIT} (ulimit -Hn)")
    script = tmp_path / "many_files.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "run", "--remote", "numpy", "--",
         sys.executable, str(script)],
        env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    n = 200_000
    # A proxy module, not the local numpy: the sums were computed by the worker.
    assert done.stdout == f"{n * (n - 1) // 2} {n * (n - 1)} RemoteModule True\n", done.stderr


CLIENT = """\
import numpy as np
a = np.arange(300_000, dtype=np.int64)
print(int(a.sum()), int(a.copy()[-1]))
"""


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds through /proc")
def test_an_acceptor_holding_1100_idle_connections_still_serves(tmp_path: Path) -> None:
    with raised_fd_limit(), tether_serve(tmp_path, "tcp://127.0.0.1:0") as served:
        addr = parse_address(served.url)
        idle: list[socket.socket] = []
        try:
            # In batches the listen backlog can take, each accepted before the next:
            # an overflowing backlog makes clients retry after seconds, and the
            # acceptor drops a connection that sends no hello within 10 s.
            base = _open_fds(served.pid)
            deadline = time.monotonic() + 30
            while len(idle) < MANY:
                for _ in range(min(BATCH, MANY - len(idle))):
                    idle.append(socket.create_connection((addr.host, addr.port), timeout=10))
                while _open_fds(served.pid) < base + len(idle):
                    assert time.monotonic() < deadline, "the acceptor did not accept them"
                    time.sleep(0.01)
            # The client is a fresh process with few fds: only the worker's are high.
            script = tmp_path / "client.py"
            script.write_text(CLIENT)
            done = subprocess.run(
                [sys.executable, "-m", "tether", "run", "--connect", served.url,
                 "--token-file", str(served.token_file), "--remote", "numpy", "--",
                 sys.executable, str(script)],
                env=child_env(), cwd=tmp_path, capture_output=True, text=True,
                timeout=TIMEOUT_S,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            # The session ran while all of them were held: none was dropped yet.
            assert _open_fds(served.pid) >= base + MANY
            n = 300_000
            assert done.stdout == f"{n * (n - 1) // 2} {n - 1}\n", done.stderr
        finally:
            for s in idle:
                s.close()
