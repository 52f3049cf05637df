"""The worker process: one per session, started by the acceptor.

It inherits the session's connected socket (the acceptor has already checked
the client's hello), sends WELCOME, and then serves the client until the
connection ends. When the client disconnects or dies the socket reports EOF and
the process exits, which frees everything the session held; there is no state
to clean up beyond the process itself.

Usage (by the acceptor, not by people)::

    python -m tether.acceptor._worker --fd N --session ID [--info JSON]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
from collections import deque
from typing import Any

from tether.acceptor._engine import Engine
from tether.acceptor._files import (
    PATH_FUNCTIONS,
    ClientModuleFinder,
    PathPatcher,
    cleanup,
    install_open,
)
from tether.transport import Channel, ChannelClosed
from tether.wire import PROTOCOL_VERSION, Flag, Frame, Kind, Role, Welcome, encode_handshake


class _Stream(io.TextIOBase):
    """The worker's sys.stdout/sys.stderr: text goes to the client, in order."""

    def __init__(self, engine: Engine, *, stderr: bool) -> None:
        self._engine = engine
        self._stderr = stderr

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._engine.write_output(s, stderr=self._stderr)
        return len(s)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False


class Worker:
    def __init__(self, sock: socket.socket, session: str, info: dict[str, Any]) -> None:
        self.session = session
        self.channel = Channel(sock, Role.SERVER)
        self.backlog: deque[Frame] = deque()
        self._rid = 0
        values = frozenset(info.get("values", ()))
        self.engine = Engine(self._send, self.request, value_modules=values)

    def _send(self, kind: int, flags: int, seq: int, meta: bytes, buffers: Any) -> None:
        self.channel.send(kind, flags, seq, meta, buffers)

    def request(self, kind: str, payload: Any) -> Any:
        """A blocking round trip to the client (module sources, file contents)."""
        self.engine.touched_client = True
        self.engine.flush_output()
        self._rid += 1
        rid = self._rid
        meta, buffers = self.engine.dumps_value((kind, payload))
        self.channel.send(Kind.REQUEST, 0, rid, meta, [b.raw() for b in buffers])
        while True:
            frame = self.channel.recv()
            if frame.kind == Kind.RESPONSE and frame.seq == rid:
                value = self.engine.loads(frame.meta, frame.buffers)
                if frame.flags & Flag.ERROR:
                    raise value
                return value
            self.backlog.append(frame)

    def install(self) -> None:
        engine = self.engine
        sys.stdout = _Stream(engine, stderr=False)
        sys.stderr = _Stream(engine, stderr=True)
        sys.meta_path.insert(0, PathPatcher(self.request))
        sys.meta_path.append(ClientModuleFinder(self.request, engine.client_files))
        install_open(self.request, engine.client_files)
        for name in PATH_FUNCTIONS:
            module = sys.modules.get(name)
            if module is not None:
                sys.meta_path[0].patch(module)  # type: ignore[attr-defined]

    def serve(self) -> None:
        welcome = Welcome(
            protocol=PROTOCOL_VERSION,
            session=self.session,
            info={"pid": os.getpid(), "python": sys.version.split()[0]},
        )
        self.channel.conn.check_outgoing(Kind.WELCOME)
        self.channel.send_pieces(encode_handshake(welcome))
        self.channel.flush()
        engine = self.engine
        channel = self.channel
        while True:
            frame = self.backlog.popleft() if self.backlog else channel.poll()
            if frame is None:
                engine.flush_output()
                frame = channel.recv()
            if frame.kind == Kind.BYE:
                engine.flush_output()
                channel.flush()
                return
            if frame.kind == Kind.RESPONSE:
                continue  # an answer nobody waits for any more
            engine.on_frame(frame.kind, frame.flags, frame.seq, frame.meta, frame.buffers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tether-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--info", default="{}")
    args = parser.parse_args(argv)
    real_stderr = sys.__stderr__
    sock = socket.socket(fileno=args.fd)
    worker = Worker(sock, args.session, json.loads(args.info))
    slice_env = os.environ.get("TETHER_SLICE")
    if slice_env:
        from tether.acceptor._limits import apply_slice_env

        apply_slice_env(slice_env)
    worker.install()
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
        cleanup()
        os._exit(70)
    cleanup()
    # Skip interpreter teardown: frameworks' atexit hooks can be slow or hang,
    # and nothing of the session must outlive the client anyway.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
