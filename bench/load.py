"""Many concurrent ``tether run`` sessions on one acceptor (issue 11's load test).

Starts a ``tether serve`` on loopback (unsandboxed, this checkout), then runs
``--rounds`` rounds of ``--sessions`` concurrent ``tether run --remote numpy``
scripts against it. Every script computes with its own number and prints the
result; each output is checked against the value computed here. Prints, per
round, the wall time, how many sessions were correct, and the slowest
session; exits 1 if any session failed or hung (``--timeout`` each).

Usage::

    python bench/load.py                         # 50 sessions x 5 rounds
    python bench/load.py --sessions 20 --rounds 1

tests/faults/test_load.py runs one round of the same (``run_round``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = """\
import sys
import numpy as np
n = int(sys.argv[1])
a = np.arange(n * 1000, dtype=np.int64)
print(n, int(a.sum()), int((a % 7).sum()), type(np).__name__)
"""


def expected(n: int) -> str:
    a = range(n * 1000)
    return f"{n} {sum(a)} {sum(i % 7 for i in a)} RemoteModule"


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@dataclass(frozen=True)
class Round:
    wall_s: float
    correct: int
    failures: list[str]
    slowest_s: float


def run_round(url: str, token_file: Path, work: Path, sessions: int, timeout: float) -> Round:
    """``sessions`` concurrent ``tether run`` scripts; each checked against :func:`expected`."""
    script = work / "load_script.py"
    script.write_text(SCRIPT)
    start = time.monotonic()
    procs = []
    for n in range(1, sessions + 1):
        argv = [sys.executable, "-m", "tether", "run", "--connect", url,
                "--token-file", str(token_file), "--remote", "numpy", "--",
                sys.executable, str(script), str(n)]  # fmt: skip
        procs.append((n, subprocess.Popen(
            argv, cwd=work, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )))  # fmt: skip
    failures: list[str] = []
    slowest = 0.0
    for n, proc in procs:
        left = max(1.0, start + timeout - time.monotonic())
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            failures.append(f"session {n} hung for {timeout:.0f} s: {err[-500:]}")
            continue
        slowest = max(slowest, time.monotonic() - start)
        if proc.returncode != 0 or out.strip() != expected(n):
            failures.append(f"session {n}: exit {proc.returncode}, {out!r}, {err[-1500:]}")
    return Round(time.monotonic() - start, sessions - len(failures), failures, slowest)


@contextlib.contextmanager
def serving(work: Path) -> Iterator[tuple[str, Path]]:
    token_file, ready = work / "token", work / "ready"
    argv = [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0",
            "--token-file", str(token_file), "--ready-file", str(ready),
            "--no-sandbox"]  # fmt: skip
    with (work / "serve.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=work, env=child_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tether serve did not start: {(work / 'serve.log').read_text()}")
            time.sleep(0.05)
        yield ready.read_text().strip(), token_file
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a round may take")
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as (url, token_file):
        print(f"{args.sessions} concurrent tether run sessions x {args.rounds} rounds, {url}")
        for r in range(1, args.rounds + 1):
            result = run_round(url, token_file, Path(tmp), args.sessions, args.timeout)
            failed += len(result.failures)
            rate = args.sessions / result.wall_s
            print(f"round {r}: {result.correct}/{args.sessions} correct, "
                  f"wall {result.wall_s:.1f} s, {rate:.2f} sessions/s", flush=True)  # fmt: skip
            for line in result.failures:
                print("  FAILED", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
