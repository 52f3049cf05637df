"""Raw-socket floors: what plain Python sockets achieve on the same link in the same run.

One small threaded server (``python -m bench.floors serve``) answers four modes, chosen by
the first byte a client sends:

- ``P`` ping-pong: echo every 16-byte message (the null-call floor);
- ``E`` frame echo: length-prefixed frames, each parsed and echoed on its own (the
  pipelined-call floor: a Python peer doing the least per-frame work a protocol can do);
- ``U`` upload: an 8-byte size, that many bytes, then a 1-byte acknowledgement;
- ``D`` download: an 8-byte size, then the server sends that many bytes.

The client functions return plain numbers (seconds per round trip, frames per second,
bytes per second). Both sides set ``TCP_NODELAY``: the floor is what a careful protocol
gets, not what Nagle's algorithm imposes.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading
import time
from pathlib import Path

_PING = 16
_FRAME_HEADER = struct.Struct("!I")
_SIZE = struct.Struct("!Q")
_CHUNK = 1 << 20


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("peer closed the connection mid-message")
        got += k
    return bytes(buf)


# -- server -----------------------------------------------------------------------------


def _serve_ping(conn: socket.socket) -> None:
    while True:
        try:
            msg = _recv_exactly(conn, _PING)
        except ConnectionError:
            return
        conn.sendall(msg)


def _serve_echo(conn: socket.socket) -> None:
    pending = bytearray()
    while True:
        data = conn.recv(_CHUNK)
        if not data:
            return
        pending += data
        out = []
        pos = 0
        # Parse frame by frame on purpose: a real protocol peer pays this per frame.
        while len(pending) - pos >= _FRAME_HEADER.size:
            (length,) = _FRAME_HEADER.unpack_from(pending, pos)
            end = pos + _FRAME_HEADER.size + length
            if end > len(pending):
                break
            out.append(bytes(pending[pos:end]))
            pos = end
        del pending[:pos]
        if out:
            conn.sendall(b"".join(out))


def _serve_upload(conn: socket.socket) -> None:
    (n,) = _SIZE.unpack(_recv_exactly(conn, _SIZE.size))
    buf = bytearray(min(n, _CHUNK * 4))
    view = memoryview(buf)
    got = 0
    while got < n:
        k = conn.recv_into(view, min(len(buf), n - got))
        if k == 0:
            raise ConnectionError("peer closed mid-upload")
        got += k
    conn.sendall(b"k")


def _serve_download(conn: socket.socket) -> None:
    (n,) = _SIZE.unpack(_recv_exactly(conn, _SIZE.size))
    block = memoryview(bytes(min(n, _CHUNK * 4)) or b"\0")
    sent = 0
    while sent < n:
        part = block[: min(len(block), n - sent)]
        conn.sendall(part)
        sent += len(part)


_MODES = {b"P": _serve_ping, b"E": _serve_echo, b"U": _serve_upload, b"D": _serve_download}


def _handle(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            mode = conn.recv(1)
            handler = _MODES.get(mode)
            if handler is not None:
                handler(conn)
        except OSError:
            pass  # the client went away; nothing to clean up beyond the socket


def serve(host: str, port: int, ready_file: Path | None) -> None:
    """Serve forever on ``host:port`` (0 = any free port); write ``host:port`` to ready_file."""
    listener = socket.create_server((host, port))
    bound = listener.getsockname()[1]
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(f"{host}:{bound}\n")
        tmp.replace(ready_file)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


# -- client -----------------------------------------------------------------------------


def _connect(addr: tuple[str, int], mode: bytes) -> socket.socket:
    sock = socket.create_connection(addr, timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(mode)
    return sock


def ping_pong(addr: tuple[str, int], n: int) -> float:
    """Mean seconds per 16-byte blocking round trip over ``n`` round trips (after a warm-up)."""
    msg = b"x" * _PING
    with _connect(addr, b"P") as sock:
        for _ in range(min(n, 50)):
            sock.sendall(msg)
            _recv_exactly(sock, _PING)
        t0 = time.perf_counter()
        for _ in range(n):
            sock.sendall(msg)
            _recv_exactly(sock, _PING)
        return (time.perf_counter() - t0) / n


def frame_echo(addr: tuple[str, int], n: int, size: int = 100) -> float:
    """Frames per second when ``n`` frames of ``size`` bytes are sent back to back, one
    ``sendall`` each, while a second thread reads the echoes."""
    frame = _FRAME_HEADER.pack(size - _FRAME_HEADER.size) + b"y" * (size - _FRAME_HEADER.size)
    total = n * size
    errors: list[BaseException] = []
    with _connect(addr, b"E") as sock:

        def read_all() -> None:
            try:
                buf = bytearray(_CHUNK)
                got = 0
                while got < total:
                    k = sock.recv_into(buf)
                    if k == 0:
                        raise ConnectionError("echo server closed early")
                    got += k
            except BaseException as exc:  # handed to the main thread below
                errors.append(exc)

        reader = threading.Thread(target=read_all, daemon=True)
        t0 = time.perf_counter()
        reader.start()
        for _ in range(n):
            sock.sendall(frame)
        reader.join(timeout=120)
        elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if reader.is_alive():
        raise TimeoutError("frame echo did not finish within 120 s")
    return n / elapsed


def upload(addr: tuple[str, int], payload: memoryview) -> float:
    """Bytes per second sending ``payload`` to the server (until its acknowledgement)."""
    with _connect(addr, b"U") as sock:
        t0 = time.perf_counter()
        sock.sendall(_SIZE.pack(len(payload)))
        sock.sendall(payload)
        _recv_exactly(sock, 1)
        return len(payload) / (time.perf_counter() - t0)


def download(addr: tuple[str, int], into: memoryview) -> float:
    """Bytes per second receiving ``len(into)`` bytes from the server into ``into``."""
    n = len(into)
    with _connect(addr, b"D") as sock:
        t0 = time.perf_counter()
        sock.sendall(_SIZE.pack(n))
        got = 0
        while got < n:
            k = sock.recv_into(into[got:], n - got)
            if k == 0:
                raise ConnectionError("download server closed early")
            got += k
        return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floors")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the raw echo server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
