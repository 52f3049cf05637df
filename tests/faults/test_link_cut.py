"""A cut network link, in network namespaces made for the test (issue 11).

The client runs in a namespace of its own, joined to the acceptor's by a veth
pair with private addresses (10.77.x.0/30, only inside these namespaces). A
cut takes one end of the pair down (``ip link set DEV down``), so that both
lose the carrier and every packet is dropped both ways, as a pulled cable
would have it: neither end hears a thing, and without the session's
liveness both would wait for ever.

* A cut shorter than the liveness window (2 s): the session survives, the
  calls made meanwhile are only late (TCP retransmits once the link is back).
* A cut longer than the window (60 s, a window of 5 s set through
  ``TETHER_LIVENESS_S``, which the worker takes from its client): the client
  gets a clear DeviceLost within the window, and the worker ends too, on its
  own side of the cut, so nothing is left running. The link stays down until
  both ends have given up, which is all a longer cut could change. (The
  default window, 20 s, would only make both sides wait longer for the same
  verdict; the shorter cut above runs under it.)

Needs root and iproute2 (``ip netns``); skips saying so otherwise.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_harness import BOUND_S, client, client_env, figure, wait_gone
from serve_process import Served, serving

pytestmark = pytest.mark.slow

#: The window of the long cut: short, so the test does not sit out the default 20 s.
WINDOW_S = 5.0
#: How often an acceptor reports usage to its pool (tether serve's default).
HEARTBEAT_S = 5.0


def _metered(log: str, session: str) -> float:
    """Seconds from the acceptor's start of ``session`` to its end, from its log:
    what its meter, and the pool's bill, count."""
    stamps = []
    for pattern in (rf"session {session} for .*: worker pid", rf"session {session} ended"):
        m = re.search(rf"^(\S+ \S+) .*{pattern}", log, re.M)
        assert m, f"no {pattern!r} in the acceptor's log:\n{log}"
        stamps.append(datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return stamps[1] - stamps[0]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "link cuts need root, to make network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "link cuts need iproute2 (ip): apt-get install iproute2"
    return None


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Link:
    """A veth pair between this namespace and a new one; ``cut``/``mend`` it."""

    def __init__(self, tag: str, net: int) -> None:
        self.ns = f"tether-{tag}"
        self.here, self.there = f"tta{tag}", f"ttb{tag}"
        self.host, self.peer = f"10.77.{net}.1", f"10.77.{net}.2"
        self.cut_now = False

    def make(self) -> None:
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "link", "add", self.here, "type", "veth", "peer", "name", self.there)
        _sh("ip", "link", "set", self.there, "netns", self.ns)
        _sh("ip", "addr", "add", f"{self.host}/30", "dev", self.here)
        _sh("ip", "link", "set", self.here, "up")
        inside = ("ip", "netns", "exec", self.ns)
        _sh(*inside, "ip", "addr", "add", f"{self.peer}/30", "dev", self.there)
        _sh(*inside, "ip", "link", "set", self.there, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")

    def cut(self) -> None:
        self.cut_now = True
        _sh("ip", "link", "set", self.here, "down")  # both ends lose the carrier

    def mend(self) -> None:
        if self.cut_now:
            self.cut_now = False
            _sh("ip", "link", "set", self.here, "up")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _sh("ip", "link", "del", self.here)  # its peer goes with it
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _sh("ip", "netns", "del", self.ns)


@pytest.fixture
def link() -> Iterator[Link]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    pid = os.getpid()
    made = Link(f"{pid % 100000}", pid % 250)
    made.remove()  # a leftover of a killed run with this pid
    try:
        made.make()
        yield made
    finally:
        made.remove()


@pytest.fixture
def acceptor(link: Link, tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path, ["--no-sandbox", "--listen", f"tcp://{link.host}:0"]) as served:
        yield served


def test_a_cut_shorter_than_the_window_is_survived(link: Link, acceptor: Served) -> None:
    inside = ("ip", "netns", "exec", link.ns)
    with client(acceptor.url, acceptor.token, "ticks", "60", prefix=inside,
                env=client_env(None)) as c:  # fmt: skip
        c.go()
        time.sleep(1.0)
        link.cut()
        time.sleep(2.0)
        link.mend()
        status, _, text = c.outcome(bound=BOUND_S + 60)
        assert (status, text) == ("OK", "OK 60"), text
        assert c.proc.returncode == 0


def test_a_cut_longer_than_the_window_ends_both_sides(link: Link, acceptor: Served) -> None:
    inside = ("ip", "netns", "exec", link.ns)
    with client(acceptor.url, acceptor.token, "call", prefix=inside,
                env=client_env(str(WINDOW_S))) as c:  # fmt: skip
        opened = time.time()
        c.go()
        time.sleep(1.0)
        cut = time.monotonic()
        link.cut()
        try:
            worker_gone = wait_gone(c.worker, WINDOW_S + BOUND_S)
            session_s = time.time() - opened  # the session's real length, as seen here
            status, when, text = c.outcome(bound=WINDOW_S + BOUND_S)
            assert time.monotonic() - cut < 60, "the cut was to last 60 s"
        finally:
            link.mend()
        assert status == "ERR" and text.startswith("DeviceLost "), text
        assert "the worker was silent for" in text
        assert when is not None
        figure(f"60 s link cut -> client error ({WINDOW_S:.0f} s window)", when - cut)
        figure(f"60 s link cut -> worker gone ({WINDOW_S:.0f} s window)", worker_gone - cut)
        log = acceptor.log_text()
        assert "the client was silent" in log
        # Usage closes at the session's real end, not at the end of the outage.
        metered = _metered(log, c.session)
        figure("60 s link cut -> session time metered by the acceptor", metered)
        figure("60 s link cut -> session time observed", session_s)
        # The acceptor notices the end at one of its usage reports: one interval
        # late at most on a quiet machine, two on a loaded one (seen: 10.5 s metered
        # for 5.3 s observed while benchmarks ran). Either is far from the 60 s
        # that metering to the end of the outage would give.
        assert session_s - HEARTBEAT_S <= metered <= session_s + 2 * HEARTBEAT_S
