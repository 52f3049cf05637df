"""PoolClient's kept connections (tether.poolapi._connections), against a small
real HTTP/1.1 server on loopback that counts connections and requests and can
close a connection the way a server that timed it out, or died, does."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tether._errors import ConnectError
from tether.poolapi import PoolClient, _connections


@dataclass
class Server:
    """Answers ``{"n": k}`` (the k-th request) on kept connections. A path seen
    for the first time that starts with ``/drop`` is read and then its connection
    is closed without an answer."""

    sock: socket.socket
    connections: list[socket.socket] = field(default_factory=list)
    requests: list[tuple[int, str, str]] = field(default_factory=list)  # (conn, method, path)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()
        return f"http://{host}:{port}"

    def accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed: the test is over
            with self.lock:
                self.connections.append(conn)
                index = len(self.connections) - 1
            thread = threading.Thread(target=self.serve, args=(conn, index))
            self.threads.append(thread)
            thread.start()

    def serve(self, conn: socket.socket, index: int) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                with self.lock:
                    first = all(p != path for _c, _m, p in self.requests)
                    self.requests.append((index, method, path))
                    n = len(self.requests)
                if path.startswith("/drop") and first:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                body = json.dumps({"n": n}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close_idle(self) -> None:
        """Close every connection from the server's side (an idle timeout)."""
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[Server]:
    sock = socket.create_server(("127.0.0.1", 0))
    srv = Server(sock)
    acceptor = threading.Thread(target=srv.accept_loop)
    acceptor.start()
    try:
        yield srv
    finally:
        srv.close_idle()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        acceptor.join(5)
        for thread in srv.threads:
            thread.join(5)
        for conn in srv.connections:
            conn.close()


def test_requests_share_one_connection(server: Server) -> None:
    with PoolClient(server.url, "t", max_idle=4) as client:
        for _ in range(5):
            client.request("GET", "/x")
        client.request("POST", "/y", {"a": 1})
        client.request("DELETE", "/z")
    assert len(server.connections) == 1
    assert len(server.requests) == 7


def test_a_connection_the_server_closed_is_not_used(server: Server) -> None:
    with PoolClient(server.url, "t", max_idle=4) as client:
        client.request("GET", "/x")
        server.close_idle()
        # Both kinds find it closed before sending, and use a fresh connection.
        assert client.request("POST", "/y", {})["n"] == 2
        server.close_idle()
        assert client.request("DELETE", "/z")["n"] == 3
    assert [c for c, _m, _p in server.requests] == [0, 1, 2]


def test_a_repeatable_request_is_sent_again_when_its_kept_connection_dies(
    server: Server,
) -> None:
    with PoolClient(server.url, "t", max_idle=4) as client:
        client.request("GET", "/x")
        # The server reads the request and closes: sent again, on a new connection.
        assert client.request("DELETE", "/drop-release")["n"] == 3
    assert [(c, m) for c, m, _p in server.requests] == [(0, "GET"), (0, "DELETE"), (1, "DELETE")]


def test_a_post_is_never_sent_twice(server: Server) -> None:
    with PoolClient(server.url, "t", max_idle=4) as client:
        client.request("GET", "/x")
        with pytest.raises(ConnectError, match="closed the connection"):
            client.request("POST", "/drop-place", {"fraction": 0.25})
        assert client.request("GET", "/x")["n"] == 3  # the client goes on
    assert [m for _c, m, p in server.requests if p == "/drop-place"] == ["POST"]


def test_a_post_takes_no_connection_idle_for_long(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_connections, "POST_REUSE_IDLE_S", 0.0)
    with PoolClient(server.url, "t", max_idle=4) as client:
        client.request("GET", "/x")
        client.request("POST", "/y", {})
        client.request("GET", "/x")
    assert [c for c, _m, _p in server.requests] == [0, 1, 1]


def test_close_closes_the_kept_connections(server: Server) -> None:
    client = PoolClient(server.url, "t", max_idle=4)
    client.request("GET", "/x")
    client.close()
    server.connections[0].settimeout(5)
    assert server.connections[0].recv(1) == b""  # the client's end is closed
    client.request("GET", "/x")  # a closed client connects again
    client.close()
    assert len(server.connections) == 2


def test_a_client_nobody_closed_closes_its_connections_when_collected(server: Server) -> None:
    client = PoolClient(server.url, "t", max_idle=4)
    client.request("GET", "/x")
    del client
    server.connections[0].settimeout(5)
    assert server.connections[0].recv(1) == b""


def test_a_client_keeps_no_connection_by_default(server: Server) -> None:
    with PoolClient(server.url, "t") as client:
        client.request("GET", "/x")
        client.request("GET", "/x")
    assert len(server.connections) == 2
