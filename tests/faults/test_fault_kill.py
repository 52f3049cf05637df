"""kill -9 of each process of a session, mid-call and mid-transfer (issue 11).

Each fault must end in a clear error at the client (``DeviceLost``, naming the
session) or, when the client is the one killed, in its worker's exit; within a
bound, never a hang; and leave no worker behind. "Mid-transfer" is made
certain, not hoped for: the receiving end of the 64 MiB array is stopped
(SIGSTOP) first, so the sender is blocked in the middle of writing it when the
kill comes, and is let go (SIGCONT) after it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_harness import client, client_env, figure, wait_gone
from serve_process import Served, alive, serving

pytestmark = pytest.mark.slow

SETTLE_S = 1.0  # after "go": the call, or the transfer, is under way


@pytest.fixture
def acceptor(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, ["--no-sandbox"]) as served:
        yield served


def _lost(outcome: tuple[str, float | None, str], session: str) -> float:
    status, when, text = outcome
    assert status == "ERR" and text.startswith("DeviceLost "), outcome
    assert f"session {session}" in text and "open a new session" in text
    assert when is not None
    return when


def test_kill_client_mid_call(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "call") as c:
        c.go()
        time.sleep(SETTLE_S)
        killed = time.monotonic()
        c.signal(signal.SIGKILL)
        figure("kill -9 client mid-call -> worker gone", wait_gone(c.worker) - killed)


def test_kill_client_mid_upload(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "upload") as c:
        os.kill(c.worker, signal.SIGSTOP)
        c.go()
        time.sleep(SETTLE_S)  # the client is blocked writing 64 MiB
        c.signal(signal.SIGKILL)
        resumed = time.monotonic()
        os.kill(c.worker, signal.SIGCONT)
        figure("kill -9 client mid-upload -> worker gone", wait_gone(c.worker) - resumed)


def test_kill_worker_mid_call(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "call") as c:
        c.go()
        time.sleep(SETTLE_S)
        killed = time.monotonic()
        os.kill(c.worker, signal.SIGKILL)
        figure("kill -9 worker mid-call -> client error", _lost(c.outcome(), c.session) - killed)


def test_kill_worker_mid_download(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "download") as c:
        c.go()
        time.sleep(0.5)
        c.signal(signal.SIGSTOP)  # before the worker's 64 MiB reply starts
        time.sleep(1.5 + SETTLE_S)  # the worker is blocked writing it
        os.kill(c.worker, signal.SIGKILL)
        wait_gone(c.worker)
        resumed = time.monotonic()
        c.signal(signal.SIGCONT)
        when = _lost(c.outcome(), c.session)
        figure("kill -9 worker mid-download -> client error", when - resumed)


def test_kill_acceptor_mid_call(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "call") as c:
        c.go()
        time.sleep(SETTLE_S)
        killed = time.monotonic()
        acceptor.proc.kill()
        when = _lost(c.outcome(), c.session)
        figure("kill -9 acceptor mid-call -> client error", when - killed)
        figure("kill -9 acceptor mid-call -> worker gone", wait_gone(c.worker) - killed)


def test_kill_acceptor_mid_upload(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "upload") as c:
        os.kill(c.worker, signal.SIGSTOP)
        c.go()
        time.sleep(SETTLE_S)  # the client is blocked writing 64 MiB
        killed = time.monotonic()
        acceptor.proc.kill()
        when = _lost(c.outcome(), c.session)  # the stopped worker dies with it (SIGKILL)
        figure("kill -9 acceptor mid-upload -> client error", when - killed)
        assert not alive(c.worker)


def test_kill_acceptor_mid_download(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "download") as c:
        c.go()
        time.sleep(0.5)
        c.signal(signal.SIGSTOP)
        time.sleep(1.5 + SETTLE_S)  # the worker is blocked writing 64 MiB
        killed = time.monotonic()
        acceptor.proc.kill()
        figure("kill -9 acceptor mid-download -> worker gone", wait_gone(c.worker) - killed)
        resumed = time.monotonic()
        c.signal(signal.SIGCONT)
        when = _lost(c.outcome(), c.session)
        figure("kill -9 acceptor mid-download -> client error (after SIGCONT)", when - resumed)


def test_kill_client_after_its_beats_piled_up_in_a_busy_worker(acceptor: Served) -> None:
    """BEATs the client sent while the worker was busy lie unread in its socket.
    They are no work left: the worker ends on the hang-up at once, not after
    a window of silence (which would say "the client was silent" in the log)."""
    with client(acceptor.url, acceptor.token, "call", env=client_env("4")) as c:
        c.go()
        time.sleep(3.0)  # BEATs every second, unread by the worker in its call
        killed = time.monotonic()
        c.signal(signal.SIGKILL)
        figure("kill -9 client after unread BEATs -> worker gone", wait_gone(c.worker) - killed)
    assert "the client was silent" not in acceptor.log_text()
