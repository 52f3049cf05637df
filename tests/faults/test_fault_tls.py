"""Liveness over ``tls://`` (issue 11).

Over TLS the client's BEATs are written by its heart thread through the same
SSL object that its main thread reads the worker's replies and BEATs through,
and the acceptor relays both ways (the worker sits behind a socketpair). A
session quiet for several windows must stay intact, and a stopped worker must
still give the client a clear error.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_harness import client, client_env, figure, wait_gone
from serve_process import Served, serving

from tether.transport._selfsigned import make_self_signed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("openssl") is None,
        reason="the openssl command makes the test certificates (apt-get install openssl)",
    ),
]

WINDOW = "2"


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    pki = make_self_signed(tmp_path / "pki", hosts=("127.0.0.1", "localhost"))
    args = ["--no-sandbox", "--listen", "tls://127.0.0.1:0"]
    args += ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    with serving(tmp_path, args) as served:
        env = client_env(WINDOW)
        env["TETHER_TLS_CA"] = str(pki.ca)
        yield served, env


def test_a_quiet_tls_session_outlives_many_windows(tls: tuple[Served, dict[str, str]]) -> None:
    served, env = tls
    assert served.url.startswith("tls://")
    with client(served.url, served.token, "sleepy", env=env) as c:
        c.go()
        status, _, text = c.outcome()
        assert (status, text) == ("OK", "OK 45"), text


def test_a_stopped_worker_behind_tls_gives_a_clear_error(
    tls: tuple[Served, dict[str, str]],
) -> None:
    served, env = tls
    with client(served.url, served.token, "call", env=env) as c:
        c.go()
        time.sleep(1.0)
        stopped = time.monotonic()
        os.kill(c.worker, signal.SIGSTOP)
        status, when, text = c.outcome()
        assert status == "ERR" and "the worker was silent for" in text, text
        assert when is not None
        figure("tls: SIGSTOP worker mid-call -> client error", when - stopped)
        os.kill(c.worker, signal.SIGCONT)
        wait_gone(c.worker)
