"""The worker process: one per session, started by the acceptor.

It inherits the session's connected socket (the acceptor has already checked
the client's hello), sends WELCOME, and then serves the client until the
connection ends. When the client disconnects or dies the socket reports EOF and
the process exits, which frees everything the session held; there is no state
to clean up beyond the process itself. A client that says nothing for the
liveness window it agreed in its hello (stopped, or cut off) ends the session
the same way, even in the middle of a call (see _watchdog.py).

Usage (by the acceptor, not by people)::

    python -m tether.acceptor._worker --fd N --session ID [--info JSON]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import linecache
import os
import signal
import socket
import sys
import threading
import warnings
from typing import Any, TextIO

from tether._env import forwarded
from tether.acceptor._codec import exception_lineage
from tether.acceptor._descendants import end_descendants
from tether.acceptor._files import (
    PATH_FUNCTIONS,
    PathPatcher,
    cleanup,
    install_open,
)
from tether.acceptor._modfinder import ClientModuleFinder
from tether.acceptor._protocol import WorkerProtocol
from tether.acceptor._shell import WorkerShell
from tether.acceptor._spawn import page_for_fork
from tether.acceptor._watchdog import watch
from tether.transport import Channel, ChannelClosed
from tether.transport._heart import Heart
from tether.wire import PROTOCOL_VERSION, Kind, Role, Welcome, encode_handshake
from tether.wire._liveness import BEATS_PER_WINDOW, DEFAULT_WINDOW_S, parse_window
from tether.wire._messages import RemoteWarning, encode_warning

_TETHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _Stream(io.TextIOBase):
    """The worker's sys.stdout/sys.stderr: text goes to the client, in order."""

    def __init__(self, protocol: WorkerProtocol, *, stderr: bool) -> None:
        self._protocol = protocol
        self._stderr = stderr
        self._pid = os.getpid()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if os.getpid() != self._pid:
            # A process the worker forked (torch.multiprocessing with "fork") cannot
            # use the session's socket: its output goes to the worker's own stream.
            real = sys.__stderr__ if self._stderr else sys.__stdout__
            if real is not None:
                real.write(s)
                real.flush()
            return len(s)
        self._protocol.write_output(s, stderr=self._stderr)
        return len(s)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False


def warning_meta(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None
) -> str:
    """The WARNING frame for one warning, as JSON text.

    A warning attributed to Tether's own frames (``stacklevel=2`` of a function
    the engine called for the script) goes out without a place: the client
    puts it on the script's line, where it would be locally.
    """
    module = ""
    if os.path.abspath(filename).startswith(_TETHER_DIR):
        filename, lineno, line = "", 0, None
    else:
        frame = sys._getframe(1)
        while frame is not None:  # the module the warning was attributed to
            if frame.f_code.co_filename == filename and frame.f_lineno == lineno:
                module = str(frame.f_globals.get("__name__", ""))
                break
            frame = frame.f_back  # type: ignore[assignment]
        if not module:  # as warnings.warn_explicit derives it
            module = filename[:-3] if filename.lower().endswith(".py") else filename or "<unknown>"
        if line is None:
            line = linecache.getline(filename, lineno) or None
    warning = RemoteWarning(
        category=exception_lineage(category),
        message=str(message),
        filename=filename,
        lineno=lineno,
        module=module,
        line=line,
    )
    return encode_warning(warning).decode()


class Worker:
    def __init__(self, sock: socket.socket, session: str, info: dict[str, Any]) -> None:
        self.session = session
        self.channel = Channel(sock, Role.SERVER)
        self.shell = WorkerShell(
            self.channel,
            value_modules=frozenset(info.get("values", ())),
            scalar_modules=frozenset(info.get("scalars", ())),
        )
        self.protocol = self.shell.protocol
        self.engine = self.shell.engine
        self.request = self.shell.request
        self.pid = self.shell.pid
        self.device = "the acceptor host's devices, unrestricted (CPU if none)"
        self.heart = self._heart(info)

    def _heart(self, info: dict[str, Any]) -> Heart | None:
        """The session's liveness, if the client speaks it (see wire/_liveness.py).

        The client is judged by the window it asked for (clamped; the default
        if it judges nobody) and sent BEATs often enough for its own window.
        """
        if "liveness" not in info:
            return None  # an older client: it would not understand a BEAT
        theirs = parse_window(info["liveness"])
        window = theirs or DEFAULT_WINDOW_S
        return Heart(
            self.channel,
            window=window,
            interval=(theirs or window) / BEATS_PER_WINDOW,
            on_silent=self._client_silent,
        )

    def _client_silent(self, seconds: float) -> None:
        """The client said nothing for a whole window: say why the session ends
        (to the acceptor's log, and to the client should it wake up), then the
        watchdog ends the worker, mid-call or not."""
        reason = (
            f"the client was silent for {seconds:.0f} s (stopped, or the network to it "
            "is down): the worker ended the session"
        )
        stderr = sys.__stderr__
        if stderr is not None:
            with contextlib.suppress(Exception):
                stderr.write(f"tether worker {self.session}: {reason}\n")
                stderr.flush()
        self.channel.send_nowait(Kind.NOTICE, 0, 0, reason.encode())

    def show_warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        """``warnings.showwarning`` in the worker: the warning goes to the client,
        in its place among the output, and the script's filters decide there."""
        if file is None:
            try:
                self.protocol.write_warning(warning_meta(message, category, filename, lineno, line))
                return
            except Exception:  # never fail the remote code over a warning: print it
                file = sys.stderr
        file.write(warnings.formatwarning(message, category, filename, lineno, line))

    def install(self) -> None:
        script = self.engine.script
        sys.stdout = _Stream(self.protocol, stderr=False)
        sys.stderr = _Stream(self.protocol, stderr=True)
        # what a process forked to run the script's code needs from the client
        os.register_at_fork(before=lambda: page_for_fork(self.request))
        # Every warning reaches the client, which applies the script's filters
        # (de-duplication included): none may be swallowed here.
        warnings.resetwarnings()
        warnings.simplefilter("always")
        warnings.showwarning = self.show_warning
        sys.meta_path.insert(0, PathPatcher(self.request))
        sys.meta_path.append(
            ClientModuleFinder(self.request, script.client_files, script.namespaces)
        )
        install_open(self.request, script.client_files)
        for name in PATH_FUNCTIONS:
            module = sys.modules.get(name)
            if module is not None:
                sys.meta_path[0].patch(module)  # type: ignore[attr-defined]

    def last_word(self, reason: str) -> None:
        """Tell the client why the session ends (a NOTICE with seq 0; clients
        older than it ignore it) and exit. Called from the SIGTERM handler: a
        frame being queued at that instant could be cut, which costs only the
        message, since the session ends either way."""
        with contextlib.suppress(Exception):
            self.shell.last_word(reason)
        finish()
        os._exit(143)

    def serve(self) -> None:
        welcome = Welcome(
            protocol=PROTOCOL_VERSION,
            session=self.session,
            info={"pid": os.getpid(), "python": sys.version.split()[0], "device": self.device},
        )
        if self.heart is not None and self.heart.window is not None:
            welcome.info["liveness"] = self.heart.window
        self.channel.conn.check_outgoing(Kind.WELCOME)
        self.channel.send_pieces(encode_handshake(welcome))
        self.channel.flush()
        self.shell.serve()


def _private_stdin() -> int:
    """Keep the acceptor's pipe (it writes why it ends the session there) on a
    private fd, and give the session's code /dev/null as stdin, as before."""
    fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return fd


def _end_when_told(worker: Worker, fd: int) -> None:
    """End the session when the acceptor says why on ``fd``, or on SIGTERM.

    A thread waits for the acceptor's line and then signals this process, so
    the last word is said from the main thread, between two of its bytecodes,
    as for a SIGTERM. The line is the request itself because a sandboxed
    worker gets no SIGTERM of its own: the acceptor's reaches bwrap, which has
    the cell killed.
    """
    said: list[str] = []
    main = threading.main_thread().ident or 0

    def wait_for_reason() -> None:
        try:
            text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        except OSError:
            return
        if text:  # empty: the acceptor closed the pipe (the session is over)
            said.append(text.splitlines()[0])  # it may have said it twice
            # To the main thread: its wait for a frame is interrupted at once.
            signal.pthread_kill(main, signal.SIGTERM)

    threading.Thread(target=wait_for_reason, name="tether-end", daemon=True).start()
    default = "the worker was terminated (SIGTERM) on the acceptor's host"

    def on_term(*_: object) -> None:
        if os.getpid() != worker.pid:
            # A process the worker forked (a DataLoader worker) inherits this
            # handler, but not the session: it must not speak on the socket.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        worker.last_word(said[0] if said else default)

    signal.signal(signal.SIGTERM, on_term)


def finish() -> None:
    """What every way out of a worker does last: its scratch files go, and so do the
    processes the session started (see :mod:`tether.acceptor._descendants`)."""
    cleanup()
    end_descendants()


def die_with_parent(parent: int) -> None:
    """Be killed (SIGKILL) when ``parent``, the acceptor, dies.

    ``PR_SET_PDEATHSIG`` (Linux): an orphaned worker would go on computing on a
    slice the pool has given to someone else. A sandboxed worker does not need
    it (its PID namespace dies with bwrap, which dies with the acceptor).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tether-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--info", default="{}")
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid dies")
    parser.add_argument("--calls-fd", type=int, default=-1, help="shared call counter")
    args = parser.parse_args(argv)
    if args.parent:
        die_with_parent(args.parent)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        # `python -m` put the working directory first on the path: the script's
        # own modules there must come from the client (one copy, paged in), not
        # be imported again from the worker's disk.
        del sys.path[0]
    real_stderr = sys.__stderr__
    sock = socket.socket(fileno=args.fd)
    info = json.loads(args.info)
    env = info.get("env")
    if isinstance(env, dict):
        for name, value in forwarded(env).items():
            os.environ.setdefault(name, value)  # what the acceptor set wins
    worker = Worker(sock, args.session, info)
    if args.calls_fd >= 0:
        from tether.acceptor._traffic import attach_call_counter

        worker.shell.calls = attach_call_counter(args.calls_fd)
    slice_env = os.environ.get("TETHER_SLICE")
    if slice_env:
        from tether.acceptor._enforce import apply_slice_env

        done = apply_slice_env(slice_env)
        if done is not None:
            worker.device = f"{', '.join(done.slice.device_ids)} (memory {done.memory})"
    _end_when_told(worker, _private_stdin())
    worker.install()
    # The client gone mid-call, or silent for its window: end now, not after the call.
    watch(sock, finish, worker.heart)
    try:
        worker.serve()
    except ChannelClosed:
        pass  # the client went away: everything goes with this process
    except Exception as exc:  # a bug in the worker: say so in the acceptor's log
        import traceback

        if real_stderr is not None:
            real_stderr.write(f"tether worker {args.session}: fatal: {exc!r}\n")
            traceback.print_exc(file=real_stderr)
            real_stderr.flush()
        finish()
        os._exit(70)
    finish()
    # Skip interpreter teardown: frameworks' atexit hooks can be slow or hang,
    # and nothing of the session must outlive the client anyway.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
