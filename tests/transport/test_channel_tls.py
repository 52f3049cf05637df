"""The blocking channel over real TLS sockets (no acceptor, no worker).

The paths that only TLS takes: no ``sendmsg`` (small pieces joined into one
record), "not now" raised as ``SSLWantReadError``/``SSLWantWriteError``, and
decrypted bytes that ``poll`` cannot see. Both ends write a large frame at once
(each write blocks until the other end reads), which deadlocks a channel that
does not read while it writes; and many small frames follow, one at a time.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.transport import Channel, ChannelClosed
from tether.transport._tls import client_context, server_context
from tether.wire import Kind, Role, State

from .servehelp import certificates, needs_openssl

pytestmark = needs_openssl

BIG = 24 << 20


@pytest.fixture
def tls_pair(tmp_path: Path) -> Iterator[tuple[Channel, Channel]]:
    made = certificates(tmp_path / "pki")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(server_context(made.cert, made.key).wrap_socket(conn, server_side=True))

    thread = threading.Thread(target=accept)
    thread.start()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_sock = client_context(made.ca).wrap_socket(raw, server_hostname="127.0.0.1")
    thread.join(10)
    listener.close()
    client = Channel(client_sock, Role.CLIENT, state=State.OPEN)
    server = Channel(accepted[0], Role.SERVER, state=State.OPEN)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * seed) & 0xFF for i in range(256)) * (n // 256)


def test_both_ends_write_a_large_frame_at_once(tls_pair: tuple[Channel, Channel]) -> None:
    client, server = tls_pair
    up, down = _pattern(BIG, 7), _pattern(BIG, 13)
    got: dict[str, bytes] = {}

    def serve() -> None:
        server.send(Kind.REPLY, 0, 1, b"down", [down])
        frame = server.recv(timeout=60)  # flushes first: writes while it reads
        got["server"] = frame.meta + b"".join(bytes(b) for b in frame.buffers)

    thread = threading.Thread(target=serve)
    thread.start()
    client.send(Kind.CALL, 0, 1, b"up", [up])
    frame = client.recv(timeout=60)
    thread.join(60)
    assert not thread.is_alive()
    assert frame.meta == b"down" and b"".join(bytes(b) for b in frame.buffers) == down
    assert got["server"] == b"up" + up


def test_many_small_frames_one_round_trip_each(tls_pair: tuple[Channel, Channel]) -> None:
    client, server = tls_pair

    def echo() -> None:
        for _ in range(500):
            f = server.recv(timeout=30)
            server.send(Kind.REPLY, 0, f.seq, f.meta[::-1])
            server.flush()

    thread = threading.Thread(target=echo)
    thread.start()
    for i in range(500):
        client.send(Kind.CALL, 0, i, f"call {i}".encode())
        reply = client.recv(timeout=30)
        assert (reply.seq, reply.meta) == (i, f"call {i}".encode()[::-1])
    thread.join(30)
    assert not thread.is_alive()


def test_a_peer_that_closes_ends_the_channel(tls_pair: tuple[Channel, Channel]) -> None:
    client, server = tls_pair
    server.close()
    with pytest.raises(ChannelClosed):
        client.recv(timeout=30)


def test_last_words_before_a_close_are_delivered(tls_pair: tuple[Channel, Channel]) -> None:
    """A frame and the close that follows it often arrive in one read; the frame
    comes out first, then the end (a REFUSED frame is exactly this)."""
    client, server = tls_pair
    for i in range(3):
        server.send(Kind.REPLY, 0, i, f"last {i}".encode())
    server.flush()
    server.close()
    time.sleep(0.2)  # let the frames and the close arrive together
    assert [client.recv(timeout=30).meta for _ in range(3)] == [b"last 0", b"last 1", b"last 2"]
    with pytest.raises(ChannelClosed):
        client.recv(timeout=30)
