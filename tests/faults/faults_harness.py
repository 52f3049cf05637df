"""Real client processes around a real acceptor, and the faults done to them.

Each client is a ``python -c`` process that opens a session, prints its
session id, waits for "go" on stdin, makes one remote call (or a few) and
prints how it ended: ``OK ...`` or ``ERR <monotonic time> <class> <message>``.
CLOCK_MONOTONIC is one clock for every process of the host (and of its network
namespaces), so a test can tell how long after its fault the error came. Those
figures are printed (run with ``-n 0 -s`` to see them), never asserted: the tests
assert only bounds that mean "no hang".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from serve_process import alive, worker_pid

SRC = Path(__file__).resolve().parents[2] / "src"
#: How long any one fault may take to surface; a hang fails here, it does not block.
BOUND_S = 30.0
#: The liveness window of tests that must not trip it (a stop of a second or two).
WIDE_WINDOW_S = "20"

CLIENT = r"""
import os, sys, time
import numpy
import tether

url, token, mode = sys.argv[1:4]
s = tether.connect(url, token=token)
rb = s.import_module("builtins")
rtime = s.import_module("time")
data = numpy.ones(8 << 20)
print("session", s.session_id, flush=True)
sys.stdin.readline()  # "go"
print("calling", flush=True)
try:
    if mode == "call":  # a long call
        rtime.sleep(300)
    elif mode == "upload":  # 64 MiB to the worker
        rb.len(data)
    elif mode == "download":  # 64 MiB from the worker, after a second and a half
        rb.eval("__import__('time').sleep(1.5) or __import__('numpy').ones(8 << 20)")
    elif mode == "long":  # must outlive many liveness windows, remote and local
        rb.exec("x = 0\nfor i in range(20_000_000): x += i")  # busy, in Python
        rtime.sleep(8)  # waiting in C, the GIL released
        x = 0
        for i in range(20_000_000):  # the script computes locally
            x += i
        time.sleep(8)  # the script sleeps
        print("OK", rb.sum(rb.range(10)), flush=True)
    elif mode == "sleepy":  # quiet for several windows: the worker's, then the script's
        rtime.sleep(6)
        time.sleep(6)
        print("OK", rb.sum(rb.range(10)), flush=True)
    elif mode == "ticks":  # a call every 0.1 s, through whatever the network does
        for i in range(int(sys.argv[4])):
            assert rb.len(rb.str(i)) == len(str(i))
            time.sleep(0.1)
        print("OK", sys.argv[4], flush=True)
    elif mode == "work":  # a short session that checks its own results
        n = int(sys.argv[4])
        np = s.import_module("numpy")
        a = np.arange(n * 1000)
        got = (int(a.sum()), rb.len(rb.str(n)), s.import_module("math").factorial(n % 20))
        import math
        want = (sum(range(n * 1000)), len(str(n)), math.factorial(n % 20))
        assert got == want, (got, want)
        print("OK", n, flush=True)
    s.close()
except Exception as exc:
    text = str(exc).replace("\n", " ")
    print("ERR", time.monotonic(), type(exc).__name__, text, flush=True)
    sys.exit(3)
"""


def client_env(window: str | None = WIDE_WINDOW_S) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    if window is not None:
        env["TETHER_LIVENESS_S"] = window
    return env


@dataclasses.dataclass
class Client:
    proc: subprocess.Popen[str]
    session: str
    worker: int

    def go(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "calling"

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def outcome(self, bound: float = BOUND_S) -> tuple[str, float | None, str]:
        """("OK"|"ERR"|"KILLED", the error's monotonic time, the rest of the line)."""
        try:
            out, err = self.proc.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            hung = f"the client hung for {bound} s: {out!r} {err[-2000:]!r}"
            raise AssertionError(hung) from None
        if self.proc.returncode == -signal.SIGKILL:
            return "KILLED", None, ""
        for line in out.splitlines():
            if line.startswith("ERR "):
                _, when, rest = line.split(" ", 2)
                return "ERR", float(when), rest
            if line.startswith("OK"):
                return "OK", None, line
        raise AssertionError(f"the client said nothing useful: {out!r} {err[-3000:]!r}")


@contextlib.contextmanager
def client(
    url: str,
    token: str,
    mode: str,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> Iterator[Client]:
    """A client process in ``mode`` with its session open, not yet told "go"."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", CLIENT, url, token, mode, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or client_env(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[:1] != ["session"]:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the client did not open a session: {line} {err[-3000:]}")
        yield Client(proc, line[1], worker_pid(line[1]))
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        proc.communicate()


def wait_gone(pid: int, bound: float = BOUND_S) -> float:
    """Wait until ``pid`` is gone; return when (monotonic). Fails after ``bound``."""
    deadline = time.monotonic() + bound
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs after {bound} s"
        time.sleep(0.02)
    return time.monotonic()


def figure(what: str, seconds: float) -> None:
    """A figure for the report (pytest -n 0 -s shows it)."""
    print(f"\nFIGURE {what}: {seconds:.2f} s", flush=True)
