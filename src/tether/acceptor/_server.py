"""The acceptor: listens, checks each client's hello, starts its worker.

(Over 400 lines: one class, the life of a connection from its first byte to its worker's
exit, with the loopback acceptor that `tether run` embeds; composition with the pool
agent and /metrics is in :mod:`tether.acceptor._service`.)

One asyncio task per connection. A connection that authenticates is handed,
socket and all, to a fresh worker process (the fd is inherited), so the session's
traffic never passes through the acceptor. The acceptor keeps a table of live
sessions, reaps workers when they exit, and terminates the rest when it stops.

Before authentication every byte is the peer's: whatever it sends ends in a
REFUSED frame or a silent close, never an exception out of the handler, and
the log lines about dropped peers are rate-limited. From the moment the hello
is read the acceptor stops reading the socket: the client waits for WELCOME
before it sends anything else, and whatever it sends then is the worker's, so
nothing the acceptor could read in the hand-off window may be taken from it.

With a :class:`~tether.acceptor._sandbox.Sandbox`, each worker runs in a cell
of its own (its uid, namespaces and private directory; see _sandbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tether._errors import ProtocolError, TetherError
from tether.acceptor._ratelog import RateLimitedLog
from tether.acceptor._sandbox import Cell, Sandbox, SandboxError
from tether.acceptor._traffic import Traffic
from tether.transport import Address, bound_address, listen, tune
from tether.transport._relay import TlsRelay
from tether.wire import (
    PROTOCOL_VERSION,
    FrameDecoder,
    Hello,
    Refused,
    decode_handshake,
    encode_handshake,
    frame_bytes,
)

log = logging.getLogger("tether.acceptor")
#: Lines about peers dropped before authentication: anyone can cause them.
drop_log = RateLimitedLog(log)

HELLO_TIMEOUT = 10.0
#: Seconds a worker told why its session ends has to say so and exit before
#: it is sent SIGTERM (see _tell_and_terminate).
TERM_GRACE_S = 2.0
#: Seconds a stopping acceptor waits for each worker before SIGKILL.
STOP_WAIT_S = 5.0
#: A hello is small; anything bigger is not a Tether client.
MAX_HELLO = 64 * 1024
#: An authorizer that admits a pool session names it here (the pool's lease id):
#: the worker's session then carries that name, so metering and "end this
#: session" from the pool find it, and one lease can hold only one live session.
POOL_SESSION_ENV = "TETHER_POOL_SESSION"


#: What of the client's hello its worker is told.
_WORKER_INFO = frozenset({"values", "scalars", "client", "env", "liveness"})


@dataclass
class SessionRecord:
    session: str
    pid: int
    peer: str
    started: float
    info: dict[str, Any] = field(default_factory=dict)


#: Decides whether a hello may open a session: returns (ok, reason, slice env),
#: or an awaitable of it when it must ask someone (the pool, at connect).
Authorizer = Callable[
    [Hello], "tuple[bool, str, Mapping[str, str]] | Awaitable[tuple[bool, str, Mapping[str, str]]]"
]


def token_authorizer(token: str) -> Authorizer:
    expected = token.encode()

    def check(hello: Hello) -> tuple[bool, str, Mapping[str, str]]:
        # surrogatepass: a lone surrogate (decode_handshake refuses them) must
        # compare unequal, not raise.
        if not hmac.compare_digest(hello.token.encode("utf-8", "surrogatepass"), expected):
            return False, "wrong or missing token: check --token-file / TETHER_TOKEN", {}
        return True, "", {}

    return check


def read_or_create_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``; creates the file (mode 600) with a new one if missing."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token, True
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token, False


class SessionObserver(Protocol):
    """Told when a session's worker starts and ends (the pool agent meters them).

    Both are called on the acceptor's event loop and must not block.
    """

    def session_started(self, session: str, pid: int, env: Mapping[str, str]) -> None: ...

    def session_ended(self, session: str) -> None: ...


class Acceptor:
    """Accepts sessions on one address; see the module docstring."""

    def __init__(
        self,
        address: Address,
        authorize: Authorizer,
        *,
        python: str = sys.executable,
        worker_env: Mapping[str, str] | None = None,
        observer: SessionObserver | None = None,
        sandbox: Sandbox | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if (address.scheme == "tls") != (tls is not None):
            raise TetherError(
                "a tls:// address needs a certificate and key (--tls-cert, --tls-key), "
                "and a certificate needs a tls:// address"
            )
        self.tls = tls
        self.requested = address
        self.authorize = authorize
        self.python = python
        self.worker_env = dict(worker_env or os.environ)
        self.observer = observer
        self.sandbox = sandbox
        #: Tests only: seconds between a worker's start and the acceptor giving
        #: up its copy of the socket (the window in which a client's first
        #: call was once lost).
        self.handoff_delay = 0.0
        self.sessions: dict[str, SessionRecord] = {}
        self.address: Address | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: For /metrics (tether.acceptor._metrics): sessions started, connections
        #: refused by code, and each session's bytes.
        self.sessions_started = 0
        self.sessions_ended = 0
        self.dropped: dict[str, int] = {}
        self.traffic = Traffic()

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str, code: str) -> None:
        self.dropped[code] = self.dropped.get(code, 0) + 1
        await _refuse(writer, reason, code)

    def end_session_threadsafe(self, session: str, reason: str) -> None:
        """Terminate ``session``'s worker (any thread); unknown sessions are ignored."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._end_session, session, reason)

    def _end_session(self, session: str, reason: str) -> None:
        proc = self._procs.get(session)
        if proc is not None and proc.returncode is None:
            log.warning("ending session %s: %s", session, reason)
            _tell_and_terminate(proc, reason)

    async def serve(self, ready: Callable[[Address], None] | None = None) -> None:
        """Serve until cancelled; ``ready(address)`` is called once listening."""
        self.loop = asyncio.get_running_loop()
        self.loop.set_exception_handler(_quiet_closed_pipes)
        sock = listen(self.requested)
        self.address = bound_address(sock, self.requested)
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": self.tls, "ssl_handshake_timeout": HELLO_TIMEOUT}
        server = await asyncio.start_server(self._on_connection, sock=sock, **tls)
        log.info("listening on %s", self.address)
        if ready is not None:
            ready(self.address)
        try:
            async with server:
                await server.serve_forever()
        finally:
            await self._stop_workers()
            # Connections still in their hello, or waiting on a worker just stopped.
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        peer = str(writer.get_extra_info("peername"))
        try:
            hello = await self._hello(reader, writer, peer)
            if hello is None:
                return
            verdict = self.authorize(hello)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            ok, reason, slice_env = verdict
        except Exception as exc:  # nothing a peer sends before auth may escape
            drop_log.warning("dropped connection from %s: %s", peer, _short(exc))
            await self._refuse(writer, "the acceptor could not check this hello", "protocol")
            return
        if not ok:
            drop_log.warning("refused %s: %s", peer, reason)
            await self._refuse(writer, reason, "auth")
            return
        await self._start_worker(writer, hello, peer, slice_env, reader)

    async def _hello(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> Hello | None:
        """The peer's hello, or None after refusing it; reading stops once it is in."""
        try:
            hello = await asyncio.wait_for(_read_hello(reader), HELLO_TIMEOUT)
        except (TimeoutError, ProtocolError, asyncio.IncompleteReadError, OSError) as exc:
            drop_log.warning("dropped connection from %s: %s", peer, _short(exc))
            await self._refuse(writer, "not a Tether client hello", "protocol")
            return None
        # What the client sends next belongs to its worker: over plain TCP stop
        # reading here (a tls:// relay reads on and forwards what it buffered).
        transport = writer.transport
        if self.tls is None and isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        buffered: object = getattr(reader, "_buffer", None)  # asyncio's, not public
        if self.tls is None and buffered:
            drop_log.warning("dropped connection from %s: data after the hello", peer)
            await self._refuse(
                writer, "the client sent data before WELCOME: not a Tether client", "protocol"
            )
            return None
        if hello.protocol != PROTOCOL_VERSION:
            await self._refuse(
                writer,
                f"protocol version mismatch: the client speaks {hello.protocol}, this "
                f"acceptor speaks {PROTOCOL_VERSION}; install the same Tether version on both",
                "version",
            )
            return None
        return hello

    async def _start_worker(
        self,
        writer: asyncio.StreamWriter,
        hello: Hello,
        peer: str,
        slice_env: Mapping[str, str],
        reader: asyncio.StreamReader | None = None,
    ) -> None:
        session = slice_env.get(POOL_SESSION_ENV) or secrets.token_hex(8)
        if session in self.sessions:
            # One lease, one worker: a ticket replayed while its session runs
            # would otherwise double the slice it pays for.
            log.warning("refused %s: session %s is already connected", peer, session)
            await self._refuse(
                writer,
                f"session {session} is already connected from another client: "
                "one pool ticket opens one session at a time; ask the pool for another slice",
                "auth",
            )
            return
        # Claimed before the first await, so a concurrent replay sees it, and
        # given back by the except below or, once the worker runs, the finally
        # at the end: every step in between sits inside them.
        self.sessions[session] = SessionRecord(session, 0, peer, time.time())
        relay: TlsRelay | None = None
        fd = -1
        cell: Cell | None = None
        try:
            sock = writer.get_extra_info("socket")
            tune(sock)
            self.traffic.watch(session, sock)
            if self.tls is not None and reader is not None:
                # TLS state cannot move with an fd: the worker gets a socketpair
                # and this process relays (see tether.transport._relay).
                relay = await TlsRelay.start(reader, writer)
                sock = relay.worker_end
            fd = os.dup(sock.fileno())
            info = {k: v for k, v in hello.info.items() if k in _WORKER_INFO}
            env = {**self.worker_env, **slice_env}
            argv = [self.python, "-m", "tether.acceptor._worker", "--fd", str(fd)]
            argv += ["--session", session, "--info", json.dumps(info)]
            calls_fd = self.traffic.call_counter_fd(session)
            if calls_fd is not None:
                argv += ["--calls-fd", str(calls_fd)]
            if self.sandbox is not None:
                cell = self.sandbox.open(session, argv, env)
                argv, spawn_env = cell.argv, cell.env
            else:  # no namespace to die with: the worker watches for us itself
                argv, spawn_env = [*argv, "--parent", str(os.getpid())], env
            proc = await asyncio.create_subprocess_exec(
                *argv,
                pass_fds=(
                    fd,
                    *(cell.pass_fds if cell is not None else ()),
                    *((calls_fd,) if calls_fd is not None else ()),
                ),
                env=spawn_env,
                stdin=asyncio.subprocess.PIPE,  # why the acceptor ends it (_tell_and_terminate)
            )
        except (OSError, SandboxError) as exc:
            self.sessions.pop(session, None)
            self.traffic.end(session)
            if cell is not None and self.sandbox is not None:
                self.sandbox.release(cell)
            log.error("cannot start a worker: %s", exc)
            await self._refuse(writer, f"the acceptor cannot start a worker: {exc}", "worker")
            if relay is not None:
                await relay.aclose()
            return
        except BaseException:  # cancelled (the acceptor stops), or a bug: give it all back
            self.sessions.pop(session, None)
            self.traffic.end(session)
            if cell is not None and self.sandbox is not None:
                self.sandbox.release(cell)
            writer.transport.abort()
            if relay is not None:
                await relay.aclose()
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            self.traffic.handed_over(session)
            if cell is not None:
                cell.close_fds()
        self.sessions[session] = SessionRecord(session, proc.pid, peer, time.time(), info)
        self._procs[session] = proc
        self.sessions_started += 1
        try:
            try:
                if self.handoff_delay:
                    await asyncio.sleep(self.handoff_delay)
            finally:
                if relay is not None:
                    relay.handed_over()
                else:
                    writer.transport.abort()  # our copy only: the worker holds the connection
            log.info("session %s for %s: worker pid %d", session, peer, proc.pid)
            if self.observer is not None:
                try:
                    self.observer.session_started(session, proc.pid, env)
                except Exception:  # metering must never take a session down
                    log.exception("session observer failed for %s", session)
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                # The acceptor is stopping. Tell the worker why and let it say
                # so before the finally below closes its pipe and its cell.
                _tell_and_terminate(proc, self._stopped())
                with contextlib.suppress(TimeoutError):  # SIGTERM came after TERM_GRACE_S
                    await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
                raise
            log.info("session %s ended (worker exit status %s)", session, code)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            if relay is not None:
                await relay.aclose()
            self.sessions.pop(session, None)
            self._procs.pop(session, None)
            self.traffic.end(session)
            self.sessions_ended += 1
            if cell is not None and self.sandbox is not None:
                self.sandbox.release(cell)
            if self.observer is not None:
                try:
                    self.observer.session_ended(session)
                except Exception:
                    log.exception("session observer failed for %s", session)

    def _stopped(self) -> str:
        return f"the acceptor at {self.address} was stopped by its operator"

    async def _stop_workers(self) -> None:
        procs = list(self._procs.values())
        for p in procs:
            _tell_and_terminate(p, self._stopped())
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), STOP_WAIT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()


def _quiet_closed_pipes(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a worker's stdin pipe that broke because the
    worker had already exited is not news. (Python 3.11's subprocess protocol keeps
    that error in a future nobody has to await, and logs it at exit as "Future
    exception was never retrieved": on the script's stderr, for an embedded
    acceptor.) Everything else goes to asyncio's default handler."""
    if isinstance(context.get("exception"), (BrokenPipeError, ConnectionResetError)) and (
        "never retrieved" in str(context.get("message", ""))
    ):
        return
    loop.default_exception_handler(context)


def _tell_and_terminate(proc: asyncio.subprocess.Process, reason: str) -> None:
    """End ``proc``'s session, telling its client who and why.

    ``reason`` goes to the worker's stdin as one line: the worker sends it to
    its client as its last word and exits. SIGTERM follows only after
    :data:`TERM_GRACE_S`, for a worker that did not: the signal cannot carry the
    reason into a sandbox (it reaches bwrap, whose death SIGKILLs the cell).
    Must run on the loop that owns ``proc``.
    """
    told = False
    if proc.stdin is not None:
        # One short line fits the pipe's buffer: written now, in full.
        with contextlib.suppress(OSError, RuntimeError):
            proc.stdin.write(reason.encode("utf-8", "replace")[:1000] + b"\n")
            told = True
    if not told:
        _terminate(proc)
        return
    asyncio.get_running_loop().call_later(TERM_GRACE_S, _terminate, proc)


def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()


def _short(exc: BaseException) -> str:
    """An exception in one bounded line (a peer chose its text)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ascii(text)[1:-1][:200]


async def _read_hello(reader: asyncio.StreamReader) -> Hello:
    """Reads the hello frame and not one byte past it (those are the worker's)."""
    dec = FrameDecoder(max_frame=MAX_HELLO)
    # Exactly the hello and not a byte more: what the client sent behind it
    # belongs to the worker (a tls:// relay forwards the stream's buffer).
    while (frame := dec.next_frame()) is None:
        dec.feed(await reader.readexactly(dec.bytes_needed()))
    msg = decode_handshake(frame)
    if not isinstance(msg, Hello):
        raise ProtocolError("the first frame must be a hello")
    return msg


async def _refuse(writer: asyncio.StreamWriter, reason: str, code: str) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        writer.write(frame_bytes(encode_handshake(Refused(reason=reason, code=code))))
        await asyncio.wait_for(writer.drain(), 2)
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2)


class EmbeddedAcceptor:
    """An acceptor on loopback in a background thread of this process.

    ``tether run`` and ``tether.connect()`` use it when nothing is configured.
    It makes its own token. Stopping it terminates its workers.
    """

    def __init__(self, *, python: str = sys.executable) -> None:
        self.token = secrets.token_urlsafe(32)
        self._acceptor = Acceptor(
            Address("tcp", "127.0.0.1", 0), token_authorizer(self.token), python=python
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tether-acceptor", daemon=True)

    def start(self) -> Address:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self._acceptor.address is not None
        return self._acceptor.address

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._acceptor.serve(lambda _a: self._ready.set()))
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)
