"""One ``tether serve``: the acceptor and what runs beside it, under one lifetime.

:class:`AcceptorService` composes what a device host runs: the
:class:`~tether.acceptor._server.Acceptor` (sessions and their workers, in the sandbox
it is given), and, in a pool, the :class:`~tether.acceptor._poolagent.PoolAgent`
(registration, heartbeats with each session's metering, ticket checks at connect), and
``/metrics`` when asked. The CLI only parses its options into these records, calls
:meth:`AcceptorService.run` and prints.

Lifetime. :meth:`run` blocks until it is interrupted (``KeyboardInterrupt``; the CLI
raises it on SIGTERM, systemd's stop), until :meth:`AcceptorService.stop` is called
(any thread), until the pool ends this node (a refused node token, a name taken:
:class:`~tether.TetherError` with the pool's reason, after everything is stopped), or
until something it starts fails (the metrics port taken: ``TetherError``; the listen
address: ``OSError``). Whatever ends it, what it started is released in reverse order:
the metrics server, the agent (and its meter), the workers and the sandbox's cells.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tether._errors import TetherError
from tether.acceptor._meter import Meter
from tether.acceptor._sandbox import Sandbox
from tether.acceptor._server import Acceptor, token_authorizer
from tether.transport import Address

__all__ = ["AcceptorService", "MetricsEndpoint", "PoolMembership"]


@dataclass(frozen=True, kw_only=True)
class MetricsEndpoint:
    """Where ``/metrics`` is served, and the bearer token scrapers must send (if any)."""

    host: str
    port: int
    token: str | None = None


@dataclass(frozen=True, kw_only=True)
class PoolMembership:
    """This node in a pool: the pool, the node's credential, and what it offers.

    ``devices`` are the discovered devices offered (``tether devices``' records) and
    ``frameworks`` the builds that drive them; ``advertise`` is the address the pool
    hands clients (default: where the acceptor listens).
    """

    url: str
    node_token: str
    name: str
    devices: Sequence[Any]
    frameworks: Sequence[Any]
    advertise: str | None = None
    heartbeat_interval: float = 5.0
    replace: bool = False
    ca: str | None = None


class AcceptorService:
    """An acceptor with its pool agent and metrics; see the module docstring.

    Exactly one of ``token`` (clients present it) and ``pool`` (clients present
    tickets the pool signed for this node) is given. ``sandbox`` confines each worker;
    without it, workers run as this user with ``worker_env``.

    Callbacks, each called once from the serving thread: ``on_listening(address,
    advertised)`` when the acceptor listens (``advertised``: the address registered
    with the pool, else None); ``on_ready(address)`` when it takes sessions (at once;
    in a pool, once registered); ``on_metrics(host, port)`` when ``/metrics`` listens.
    """

    def __init__(
        self,
        address: Address,
        *,
        token: str | None = None,
        pool: PoolMembership | None = None,
        tls: ssl.SSLContext | None = None,
        sandbox: Sandbox | None = None,
        worker_env: Mapping[str, str] | None = None,
        metrics: MetricsEndpoint | None = None,
        on_listening: Callable[[Address, str | None], None] | None = None,
        on_ready: Callable[[Address], None] | None = None,
        on_metrics: Callable[[str, int], None] | None = None,
    ) -> None:
        if (token is None) == (pool is None):
            raise ValueError("an acceptor takes either a token or a pool's tickets")
        self.pool = pool
        self.metrics = metrics
        self._on_listening = on_listening
        self._on_ready = on_ready
        self._on_metrics = on_metrics
        self.agent: Any = None  # the PoolAgent, once listening in a pool
        self.meter: Meter | None = None
        self._fatal: str | None = None
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        sandboxing: dict[str, Any] = {"sandbox": sandbox} if sandbox else {}
        if worker_env is not None:
            sandboxing["worker_env"] = worker_env
        if pool is None:
            assert token is not None
            self.acceptor = Acceptor(address, token_authorizer(token), tls=tls, **sandboxing)
            if metrics is not None:
                from tether.acceptor._metrics import MeteringObserver

                self.meter = Meter()
                self.acceptor.observer = MeteringObserver(self.meter)
        else:
            from tether.acceptor._authorizer import TicketAuthorizer

            self.authorizer = TicketAuthorizer(pool.name, list(pool.devices))
            self.acceptor = Acceptor(address, self.authorizer, tls=tls, **sandboxing)
            self.meter = Meter()  # the agent's: it meters each session for the pool and /metrics

    def run(self) -> None:
        """Serve until interrupted or ended; see the module docstring."""
        try:
            asyncio.run(self._serve())
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except BaseExceptionGroup as group:  # one task's failure, e.g. the port is taken
            raise group.exceptions[0] from None
        finally:
            self._close()
        if self._fatal is not None:
            raise TetherError(self._fatal)

    # ----------------------------------------------------------------- serving

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        if self.metrics is None:
            await self.acceptor.serve(self._listening)
            return
        from tether.acceptor._metrics import AcceptorMetrics, start_metrics

        assert self.meter is not None
        endpoint = self.metrics
        try:  # bound first: a taken port stops us before any session starts
            server = await start_metrics(
                AcceptorMetrics(self.acceptor, self.meter),
                endpoint.host,
                endpoint.port,
                token=endpoint.token,
                ready=self._on_metrics,
            )
        except OSError as exc:
            raise TetherError(
                f"cannot serve metrics on {endpoint.host}:{endpoint.port}: {exc.strerror or exc}"
            ) from None
        async with server, asyncio.TaskGroup() as group:
            group.create_task(self.acceptor.serve(self._listening))
            group.create_task(server.serve_forever())

    def _listening(self, address: Address) -> None:
        pool = self.pool
        if pool is None:
            if self._on_listening is not None:
                self._on_listening(address, None)
            if self._on_ready is not None:
                self._on_ready(address)
            return
        from tether.acceptor._poolagent import PoolAgent, registration_devices
        from tether.poolapi import PoolClient

        advertised = _advertised(address, pool.advertise)
        if self._on_listening is not None:
            self._on_listening(address, advertised)
        on_ready = self._on_ready
        agent = PoolAgent(
            # Kept connections (its heartbeats, the ticket checks): the agent closes them.
            PoolClient(pool.url, pool.node_token, timeout=10.0, ca=pool.ca, max_idle=2),
            name=pool.name,
            address=advertised,
            devices=registration_devices(list(pool.devices), tuple(pool.frameworks)),
            authorizer=self.authorizer,
            end_session=self.acceptor.end_session_threadsafe,
            on_fatal=self._end,
            interval=pool.heartbeat_interval,
            replace=pool.replace,
            on_registered=(lambda: on_ready(address)) if on_ready is not None else None,
            meter=self.meter,
        )
        self.agent = agent
        self.acceptor.observer = agent
        self.authorizer.checker = agent.admit  # tickets are checked with the pool at connect
        agent.start()

    def stop(self) -> None:
        """End :meth:`run` from any thread, as Ctrl-C would (it returns normally)."""
        self._cancel()

    def _end(self, message: str) -> None:
        """The agent cannot go on (any thread): stop serving, and say why from run()."""
        with self._lock:
            if self._fatal is not None:
                return
            self._fatal = message
        self._cancel()

    def _cancel(self) -> None:
        self._stopping = True
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(main.cancel)

    def _close(self) -> None:
        if self.agent is not None:
            self.agent.stop()  # its last heartbeat; it closes the meter
        elif self.meter is not None:
            self.meter.close()
        if self.acceptor.sandbox is not None:
            self.acceptor.sandbox.close()


def _advertised(bound: Address, advertise: str | None) -> str:
    """The address the pool hands clients: ``advertise``, else where we listen (by the
    host's name when listening on every interface)."""
    if advertise:
        return advertise
    if bound.scheme in ("tcp", "tls") and bound.host in ("0.0.0.0", "::", ""):
        import socket

        return f"{bound.scheme}://{socket.getfqdn()}:{bound.port}"
    return str(bound)
