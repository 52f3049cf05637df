"""The acceptor's end of a ``tls://`` session: TLS here, plain bytes to the worker.

A plain session's socket is handed to its worker process and the acceptor
never touches its bytes again. A TLS session cannot be handed over that way:
its state (keys, sequence numbers, the record half read) lives in this
process's ``SSLObject`` and does not travel with a file descriptor. So the
acceptor keeps the TLS connection and gives the worker one end of a
``socketpair``; :class:`TlsRelay` copies bytes both ways between the two until
either side ends, then closes both (a TLS stream cannot be half-closed).

Why not let the worker terminate TLS itself: it would need the acceptor's
private key, and a worker runs whatever its client ships; the key must stay
where sessions cannot read it. The price is a copy through this process and
one more wake-up each way; docs/security.md gives the measured figures.

The copying is done by two small protocols, one on each transport, that write
what they receive straight into the other transport (no stream buffers, no
task switch per chunk), with asyncio's flow control wired across: when one
side's write buffer fills, the other side stops reading until it drains.

Bytes the TLS stream reader had already buffered past the hello (a client
pipelines its first call behind it) are written to the worker first, so
nothing is lost in the hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["TlsRelay"]


class _Forward(asyncio.Protocol):
    """Receives on one transport and writes to ``peer``; ends the relay on EOF or loss."""

    def __init__(self, relay: TlsRelay) -> None:
        self.relay = relay
        self.peer: asyncio.Transport | None = None

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.write(data)

    def eof_received(self) -> bool:
        self.relay.finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost += 1
        self.relay.finish()

    # Our transport's write buffer is full: stop reading the side that fills it.
    def pause_writing(self) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.resume_reading()


class TlsRelay:
    """Relays one TLS connection to a socketpair; see the module docstring.

    Build with :meth:`start`; give :attr:`worker_end` to the worker, then call
    :meth:`handed_over`. :meth:`aclose` stops the relay and closes both sides;
    it is safe to call more than once.
    """

    def __init__(self, worker_end: socket.socket) -> None:
        self.worker_end = worker_end
        self._transports: list[asyncio.Transport] = []
        self.lost = 0  # transports whose connection is gone (2: all closed)

    @classmethod
    async def start(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> TlsRelay:
        """Take over the TLS connection ``reader``/``writer`` and relay it to a new
        socketpair. ``reader`` must not be used afterwards."""
        loop = asyncio.get_running_loop()
        tls = writer.transport
        assert isinstance(tls, asyncio.Transport)
        tls.pause_reading()
        # Whatever the stream already holds: with reading paused nothing more
        # arrives, so after feed_eof() read() returns exactly that.
        reader.feed_eof()
        early = await reader.read()
        ours, theirs = socket.socketpair()
        relay = cls(theirs)
        from_tls, from_worker = _Forward(relay), _Forward(relay)
        try:
            local, _ = await loop.connect_accepted_socket(lambda: from_worker, sock=ours)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        from_tls.peer, from_worker.peer = local, tls
        relay._transports = [tls, local]
        tls.set_protocol(from_tls)
        if early:
            local.write(early)
        tls.resume_reading()
        if tls.is_closing():
            relay.finish()
        return relay

    def handed_over(self) -> None:
        """The worker holds its end now: close this process's copy, so the
        worker's exit is seen here as the end of the stream."""
        self.worker_end.close()

    def finish(self) -> None:
        """Close both sides (pending writes are flushed first); idempotent."""
        for t in self._transports:
            t.close()

    async def aclose(self, grace: float = 2.0) -> None:
        """Close both sides, flushing what is pending for up to ``grace``
        seconds; a peer that reads nothing (stopped, or gone silent) does not
        hold the connection open past that."""
        self.finish()
        self.worker_end.close()
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while self.lost < len(self._transports) and loop.time() < until:
            await asyncio.sleep(0.05)
        for t in self._transports:
            with contextlib.suppress(Exception):
                t.abort()
