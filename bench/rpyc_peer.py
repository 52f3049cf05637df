"""The RPyC peer: its stock classic-mode server, and the client glue that makes a :class:`Peer`.

The server is RPyC's own ``ThreadedServer(ClassicService)`` with its default configuration,
except that by default both ends set ``TCP_NODELAY``. RPyC as shipped leaves Nagle's
algorithm on, and its two-write messages then meet the peer's delayed ACK: ~40 ms stalls,
so fine-grained work runs ~60 ms per iteration. That measures a socket option, not a
design, and takes minutes; ``stock=True`` (``--rpyc-stock``) measures it as shipped.
Arrays cross with ``rpyc.classic.deliver``/``obtain`` (pickle by value), the idiomatic
classic way; passing a netref to ``torch.from_numpy`` does not work at all.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bench.cases import Peer


def serve(host: str, port: int, ready_file: Path | None, stock: bool = False) -> None:
    """Serve RPyC classic mode on ``host:port`` until killed; write ``host:port`` when ready."""
    from rpyc.core.service import ClassicService  # type: ignore[import-untyped]
    from rpyc.utils.server import ThreadedServer  # type: ignore[import-untyped]

    class NoDelayServer(ThreadedServer):  # type: ignore[misc]
        def _authenticate_and_serve_client(self, sock: socket.socket) -> None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super()._authenticate_and_serve_client(sock)

    cls = ThreadedServer if stock else NoDelayServer
    server = cls(ClassicService, hostname=host, port=port, reuse_addr=True)
    bound = server.listener.getsockname()[1]
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(f"{host}:{bound}\n")
        tmp.replace(ready_file)
    server.start()


def connect(host: str, port: int, timeout: float = 30.0, stock: bool = False) -> Any:
    """An RPyC classic connection, retrying until ``timeout`` while the server starts."""
    import rpyc  # type: ignore[import-untyped]

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = rpyc.classic.connect(host, port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    if not stock:
        conn._channel.stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Bulk transfers of 256 MiB take longer than RPyC's default 30 s request timeout.
    conn._config["sync_request_timeout"] = 600
    return conn


def make_peer(host: str, port: int, stock: bool = False) -> Peer:
    """A :class:`Peer` whose ``torch`` is ``conn.modules.torch`` on the RPyC server."""
    import rpyc

    conn = connect(host, port, stock=stock)
    return Peer(
        name="rpyc",
        torch=conn.modules.torch,
        to_peer=lambda array: rpyc.classic.deliver(conn, array),
        to_local=rpyc.classic.obtain,
        close=conn.close,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rpyc_peer")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run RPyC's classic server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--ready-file", type=Path)
    s.add_argument("--stock", action="store_true", help="leave Nagle's algorithm on")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.ready_file, stock=args.stock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
