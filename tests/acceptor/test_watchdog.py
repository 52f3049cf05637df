"""A worker ends with its client, even in the middle of a long call.

Each test runs a real client process whose remote call would take minutes,
takes the client away (kill -9, or Ctrl-C), and requires the worker to be gone
well before the call could have finished: no orphan keeps computing on a slice
the pool may have given to someone else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptor_thread import running_acceptor

from tether.acceptor._server import token_authorizer

SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = pytest.mark.slow

CALL_S = 300  # how long the remote call would run
BOUND_S = 30  # how long the worker may outlive its client (generous: a loaded CI machine)

CLIENT = f"""
import sys, tether
s = tether.connect(sys.argv[1], token=sys.argv[2])
remote_time = s.import_module("time")
print("calling", flush=True)
with s:
    remote_time.sleep({CALL_S})
"""


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def acceptor_url() -> Iterator[tuple[str, str]]:
    token = "gone-" * 8
    with running_acceptor(token_authorizer(token)) as url:
        yield url, token


def _env() -> dict[str, str]:
    """Ours, with this checkout's tether first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _start_client(url: str, token: str) -> tuple[subprocess.Popen[str], int]:
    before = _children()
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, url, token],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    assert client.stdout is not None
    line = client.stdout.readline()
    assert line.strip() == "calling", client.stderr.read() if client.stderr else line
    time.sleep(0.5)  # the call is under way in the worker
    workers = _children() - before - {client.pid}
    assert len(workers) == 1, f"expected one new worker, found {workers}"
    return client, workers.pop()


def test_a_worker_ends_when_its_client_is_killed_mid_call(acceptor_url: tuple[str, str]) -> None:
    client, worker = _start_client(*acceptor_url)
    os.killpg(client.pid, signal.SIGKILL)
    client.communicate(timeout=10)
    assert _wait_gone(worker, BOUND_S), f"worker {worker} still runs its {CALL_S} s call"


def test_ctrl_c_in_the_client_stops_the_worker_mid_call(acceptor_url: tuple[str, str]) -> None:
    client, worker = _start_client(*acceptor_url)
    os.killpg(client.pid, signal.SIGINT)
    try:
        _out, err = client.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(client.pid, signal.SIGKILL)
        client.communicate()
        pytest.fail("the client did not exit after Ctrl-C")
    assert "KeyboardInterrupt" in err
    assert _wait_gone(worker, BOUND_S), f"worker {worker} still runs its {CALL_S} s call"
