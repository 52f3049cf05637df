"""Stopped processes (SIGSTOP) and long calls: liveness, measured (issue 11).

A stopped process keeps its sockets open, so nothing but the session's own
liveness can tell it from a busy one. With a 2-second window: a stopped client
frees its worker, mid-call or idle; a client whose worker is stopped gets a
clear error; and a session whose worker computes, and whose script computes,
for several windows at a time is not disturbed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_harness import client, client_env, figure, wait_gone
from serve_process import Served, alive, sandbox_skip_reason, serving

pytestmark = pytest.mark.slow

WINDOW = "2"


@pytest.fixture
def acceptor(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, ["--no-sandbox"]) as served:
        yield served


@pytest.mark.parametrize("when", ["mid-call", "idle"])
def test_a_stopped_client_frees_its_worker(acceptor: Served, when: str) -> None:
    with client(acceptor.url, acceptor.token, "call", env=client_env(WINDOW)) as c:
        if when == "mid-call":
            c.go()
            time.sleep(3.0)  # a few of the client's BEATs lie unread in the busy worker
        stopped = time.monotonic()
        c.signal(signal.SIGSTOP)
        figure(f"SIGSTOP client {when} -> worker gone", wait_gone(c.worker) - stopped)
        assert "the client was silent" in acceptor.log_text()
        c.signal(signal.SIGCONT)
        if when == "mid-call":  # woken, it learns why its session ended
            status, _, text = c.outcome()
            assert status == "ERR" and text.startswith("DeviceLost "), text
            assert "the client was silent for" in text


def test_a_stopped_client_frees_its_sandboxed_worker(tmp_path: Path) -> None:
    """The same inside the worker's cell (its own namespaces, seccomp filter)."""
    reason = sandbox_skip_reason()
    if reason:
        pytest.skip(reason)
    with (
        serving(tmp_path) as sandboxed,
        client(sandboxed.url, sandboxed.token, "call", env=client_env(WINDOW)) as c,
    ):
        c.go()
        time.sleep(3.0)
        stopped = time.monotonic()
        c.signal(signal.SIGSTOP)
        figure("SIGSTOP client mid-call -> sandboxed worker gone", wait_gone(c.worker) - stopped)
        c.signal(signal.SIGCONT)
        status, _, text = c.outcome()
        assert status == "ERR" and "the client was silent for" in text, text


def test_a_client_whose_worker_is_stopped_gets_a_clear_error(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "call", env=client_env(WINDOW)) as c:
        c.go()
        time.sleep(1.0)
        stopped = time.monotonic()
        os.kill(c.worker, signal.SIGSTOP)
        status, when, text = c.outcome()
        assert status == "ERR" and text.startswith("DeviceLost "), text
        assert "the worker was silent for" in text and "TETHER_LIVENESS_S" in text
        assert when is not None
        figure("SIGSTOP worker mid-call -> client error", when - stopped)
        assert alive(c.worker)  # stopped, not dead: woken, it finds its client gone
        os.kill(c.worker, signal.SIGCONT)
        resumed = time.monotonic()
        figure("SIGCONT worker -> worker gone", wait_gone(c.worker) - resumed)


def test_long_computations_on_both_sides_outlive_many_windows(acceptor: Served) -> None:
    with client(acceptor.url, acceptor.token, "long", env=client_env(WINDOW)) as c:
        c.go()
        status, _, text = c.outcome(bound=180)
        assert (status, text) == ("OK", "OK 45"), text
