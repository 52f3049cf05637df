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

Bytes the TLS reader had already buffered past the hello (a client pipelines
its first call behind it) are relayed first, so nothing is lost in the
hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["TlsRelay"]

#: Bytes read per step; large enough that bulk transfers move in few steps.
_CHUNK = 1 << 20
#: How much the relay may hold unsent before it stops reading the other side.
_LIMIT = 1 << 20


class TlsRelay:
    """Relays one TLS stream to a socketpair; see the module docstring.

    Build with :meth:`start`; give :attr:`worker_end` to the worker, then call
    :meth:`handed_over`. :meth:`aclose` stops the relay and closes both sides;
    it is safe to call more than once.
    """

    def __init__(
        self,
        tls: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        local: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        worker_end: socket.socket,
    ) -> None:
        self._tls = tls
        self._local = local
        self.worker_end = worker_end
        self._task = asyncio.create_task(self._run(), name="tether-tls-relay")

    @classmethod
    async def start(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> TlsRelay:
        """Start relaying the TLS connection ``reader``/``writer`` to a new socketpair."""
        ours, theirs = socket.socketpair()
        try:
            local = await asyncio.open_connection(sock=ours, limit=_LIMIT)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        return cls((reader, writer), local, theirs)

    def handed_over(self) -> None:
        """The worker holds its end now: close this process's copy, so the
        worker's exit is seen here as the end of the stream."""
        self.worker_end.close()

    async def wait_closed(self) -> None:
        """Wait until either side has ended and both are closed."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def aclose(self) -> None:
        """Stop relaying and close both sides."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.worker_end.close()

    async def _run(self) -> None:
        (tls_r, tls_w), (loc_r, loc_w) = self._tls, self._local
        pumps = [
            asyncio.create_task(_pump(tls_r, loc_w)),
            asyncio.create_task(_pump(loc_r, tls_w)),
        ]
        try:
            # Either direction ending ends the session: a TLS stream has no
            # half-close, and the worker exits when its client is gone.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (loc_w, tls_w):
                w.close()
            for w in (loc_w, tls_w):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(w.wait_closed(), 2)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy ``src`` to ``dst`` until EOF or an error on either (both just end it)."""
    with contextlib.suppress(OSError, ConnectionError, asyncio.IncompleteReadError):
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
