"""Start and stop the servers the suite measures against, optionally inside a namespace.

Every server is a subprocess in its own session (process group), started with a ready file
it writes once it listens; :class:`Servers` stops them all (terminate, then kill the group)
on exit, also when a start fails. Only processes this module started are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for subprocesses: ``bench`` and ``tether`` importable from the tree."""
    env = dict(os.environ)
    extra = [str(REPO / "src"), str(REPO)]
    if env.get("PYTHONPATH"):
        extra.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(extra)
    return env


class ServerFailed(RuntimeError):
    """A server did not come up; the message carries its output."""


class Servers:
    """A set of server subprocesses, stopped together. Use as a context manager."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tether-bench-")
        self.workdir = workdir or Path(self._tmp.name)
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], timeout: float = 60.0) -> str:
        """Start ``argv`` (which must take ``--ready-file PATH``) and return the ready file's
        text once it appears. Raises :class:`ServerFailed` when the process exits first or
        ``timeout`` passes."""
        ready = self.workdir / f"{name}.ready"
        log = self.workdir / f"{name}.log"
        ready.unlink(missing_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*argv, "--ready-file", str(ready)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                cwd=REPO,
                start_new_session=True,
            )
        self._procs.append((name, proc))
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else f"was not ready in {timeout:.0f} s"
                raise ServerFailed(f"{name} {why}; its output:\n{self.log_tail(name)}")
            time.sleep(0.02)
        return ready.read_text().strip()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        log = self.workdir / f"{name}.log"
        try:
            return log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no output)"

    def stop_all(self) -> None:
        for _, proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        self._tmp.cleanup()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` and its process group (its workers), killing after 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # Children (e.g. a session's worker) may outlive the leader: clear the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def python() -> list[str]:
    return [sys.executable]


def floor_server(host: str, port: int = 0) -> list[str]:
    return [*python(), "-m", "bench.floors", "serve", "--host", host, "--port", str(port)]


def rpyc_server(host: str, port: int = 0, stock: bool = False) -> list[str]:
    return [
        *python(),
        "-m",
        "bench.rpyc_peer",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        *(["--stock"] if stock else []),
    ]


def sandbox_args() -> list[str]:
    """``tether serve``'s sandbox flag for this machine: none where bubblewrap is installed
    (workers sandboxed, as in production), else ``--no-sandbox`` (``tether serve`` refuses to
    start a sandboxed acceptor without bwrap), so the suite also runs on a machine without it."""
    import shutil

    return [] if shutil.which("bwrap") else ["--no-sandbox"]


def sandbox_note() -> str:
    """One line for a report's header: whether the acceptor's workers ran sandboxed."""
    return "workers sandboxed (bwrap)" if not sandbox_args() else "workers unsandboxed (no bwrap)"


def tether_server(host: str, port: int, token_file: Path) -> list[str]:
    return [
        *python(),
        "-m",
        "tether",
        "serve",
        "--listen",
        f"tcp://{host}:{port}",
        "--token-file",
        str(token_file),
        *sandbox_args(),
    ]


def free_port() -> int:
    """A TCP port free on loopback right now (racy by nature; good enough for a benchmark)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def split_address(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"tcp://host:port"`` -> ``(host, port)``."""
    text = text.removeprefix("tcp://").strip()
    host, _, port = text.rpartition(":")
    return host, int(port)
