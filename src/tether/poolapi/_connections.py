"""The kept HTTP connections of one :class:`~tether.poolapi.PoolClient`.

A connection is kept (HTTP/1.1 keep-alive) and reused by the next request, which
spares the pool and the client a TCP handshake (and a TLS one) a request. Kept
connections need an owner: :meth:`Connections.close` closes them (the client's
``close``), and so does collecting the client (:func:`weakref.finalize`), so
that one forgotten does not hold sockets open for the life of the process.

The pool may close a kept connection while it is idle (uvicorn does after 5 s).
One that the pool has closed is noticed before it is used (it reads its end,
:func:`_still_open`); a request that finds it closed anyway (a race with the
close) is sent again, on a fresh connection, only when repeating it is harmless
(GET, PUT, DELETE: a second release of a session is a no-op). A POST is never
sent twice -- the pool may have placed a slice for the first one -- so it reuses
only a connection idle for less than :data:`POST_REUSE_IDLE_S`, well inside the
pool's idle timeout, and fails as a fresh connection would have.

Standard library only, like the rest of :mod:`tether.poolapi`. Errors are the
standard library's (``OSError``, ``http.client.HTTPException``); the client
turns them into Tether's.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time

__all__ = ["POST_REUSE_IDLE_S", "Connections"]

#: A kept connection idle longer than this is not used for a POST (which is never
#: sent twice): well inside uvicorn's 5 s idle timeout, so the pool does not close
#: it under the request.
POST_REUSE_IDLE_S = 2.0
#: Methods a request may be sent again with, on a fresh connection, when the kept
#: one turns out closed: doing them twice is doing them once.
_REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: What a kept connection the server had closed raises when used.
_CLOSED_UNDER_US = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


class Connections:
    """Requests to one server over kept connections; thread-safe.

    Up to ``max_idle`` idle connections are kept (the most recently used is
    taken first); each request takes one, or opens one, and gives it back when
    the answer is read and the server keeps it open.
    """

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        timeout: float,
        tls: ssl.SSLContext | None,
        max_idle: int,
    ) -> None:
        self._host, self._port = host, port
        self._timeout = timeout
        self._tls = tls
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []

    def exchange(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """(status, body) of one request: on a kept connection if one is fit, else
        on a new one (see the module docstring for when it is sent twice)."""
        repeatable = method in _REPEATABLE
        conn = self._take(None if repeatable else POST_REUSE_IDLE_S)
        if conn is not None:
            try:
                return self._on(conn, method, target, body, headers)
            except _CLOSED_UNDER_US:
                if not repeatable:
                    raise  # it may have been done: never twice
        return self._on(self._connect(), method, target, body, headers)

    def close(self) -> None:
        """Close the idle connections (one in use now is kept when given back: close
        once the requests are done). The object stays usable: it connects again."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _since in idle:
            conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _on(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, bytes]:
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return resp.status, payload

    def _take(self, max_idle_s: float | None) -> http.client.HTTPConnection | None:
        """The most recently used idle connection that is still open (and idle for
        less than ``max_idle_s``, if given); None if there is none."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()
            if (max_idle_s is None or now - since < max_idle_s) and _still_open(conn):
                return conn
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection may carry a request: nothing to read on it (a
    closed one reads its end; bytes nobody asked for make it unusable)."""
    sock = conn.sock
    if sock is None:
        return False
    if not hasattr(select, "poll"):
        return True  # no cheap look (Windows): a repeatable request is retried
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)
