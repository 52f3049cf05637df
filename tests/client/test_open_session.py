"""``open_session`` leaves nothing open when the opening fails.

A fake acceptor on a real socket answers the hello with a welcome that is
wrong in one way each; the client must raise and close its socket before the
exception reaches the caller (not when the traceback is collected): the peer
sees the end of the stream and the process holds no more descriptors than
before, while the exception is still alive.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tether._errors import ProtocolError, ProtocolVersionMismatch
from tether.client._connect import open_session
from tether.wire import FrameDecoder, Kind, Welcome, encode_handshake
from tether.wire._frames import encode_frame, frame_bytes

PEER_TIMEOUT_S = 10.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def fake_acceptor(answer: bytes) -> Iterator[tuple[str, Callable[[], bool]]]:
    """Accept one connection, read its hello, send ``answer``; yields the URL and
    a function that says whether the client then closed its end."""
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(PEER_TIMEOUT_S)
            dec = FrameDecoder()
            while dec.next_frame() is None:
                dec.feed(conn.recv(dec.bytes_needed()))
            conn.sendall(answer)
            try:
                if conn.recv(1) == b"":
                    closed.set()
            except OSError:  # a reset is the client closing too
                closed.set()

    thread = threading.Thread(target=serve, name="fake-acceptor")
    thread.start()
    port = listener.getsockname()[1]

    def client_closed() -> bool:
        thread.join(PEER_TIMEOUT_S + 5)
        return closed.is_set()

    try:
        yield f"tcp://127.0.0.1:{port}", client_closed
    finally:
        listener.close()
        thread.join(PEER_TIMEOUT_S + 5)


def welcome(**fields: Any) -> bytes:
    return frame_bytes(encode_handshake(Welcome(protocol=1, session="s", **fields)))


BAD_WELCOMES = {
    "not JSON": (frame_bytes(encode_frame(Kind.WELCOME, 0, 0, b"{not json")), ProtocolError),
    "unexpected fields": (
        frame_bytes(encode_frame(Kind.WELCOME, 0, 0, b'{"protocol": 1, "session": "s", "x": 1}')),
        ProtocolError,
    ),
    "not a dict": (frame_bytes(encode_frame(Kind.WELCOME, 0, 0, b"[1, 2]")), ProtocolError),
    "another Python": (welcome(info={"python": "2.7.18"}), ProtocolVersionMismatch),
}


@pytest.mark.parametrize("case", list(BAD_WELCOMES))
def test_a_bad_welcome_closes_the_socket_before_raising(case: str) -> None:
    answer, error = BAD_WELCOMES[case]
    with fake_acceptor(answer) as (url, client_closed):
        before = open_fds()
        with pytest.raises(error) as raised:
            open_session(url, "token", timeout=PEER_TIMEOUT_S)
        # The exception (and the frames its traceback holds) is still alive here.
        # The fake acceptor's end of the connection is this process's too: wait
        # until it saw the client close and closed its own end, then count.
        assert client_closed()
        assert open_fds() == before
        del raised
