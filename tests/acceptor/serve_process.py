"""A real ``tether serve`` process on loopback, and what tests look at around it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT_S = 60.0


def sandbox_skip_reason() -> str | None:
    """Why the per-session-uid sandbox cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the per-session-uid sandbox needs a root acceptor (CI runs as root)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (.ci/run installs it: apt-get install bubblewrap)"
    return None


@dataclasses.dataclass(frozen=True)
class Served:
    url: str
    token: str
    token_file: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(
    root: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[Served]:
    """``tether serve`` on 127.0.0.1 with ``args`` until the block ends."""
    token_file, ready, log = root / "token", root / "ready", root / "serve.log"
    child_env = {k: v for k, v in (env or os.environ).items() if not k.startswith("TETHER_")}
    child_env["PYTHONPATH"] = str(SRC)
    argv = [sys.executable, "-m", "tether", "serve", "--listen", "tcp://127.0.0.1:0"]
    argv += ["--token-file", str(token_file), "--ready-file", str(ready), *args]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            argv, cwd=root, env=child_env, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (ready.exists() and ready.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tether serve did not start:\n{log.read_text()}", pytrace=False)
            time.sleep(0.05)
        yield Served(ready.read_text().strip(), token_file.read_text().strip(), token_file, proc,
                     log)  # fmt: skip
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid`` (from /proc), nearest first."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def worker_pid(session_id: str) -> int:
    """The host pid of the Python worker of ``session_id`` (not bwrap's, not setpriv's)."""
    needle = f"--session\0{session_id}\0".encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if needle in b"\0".join(argv) and argv[1:3] == [b"-m", b"tether.acceptor._worker"]:
                return int(name)
    raise AssertionError(f"no worker process for session {session_id}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"
