"""An acceptor's side of the pool: tickets in, registration and heartbeats out.

``tether serve --pool URL`` runs two pieces from here next to the
:class:`~tether.acceptor._server.Acceptor`:

- :class:`TicketAuthorizer` admits a hello only when its token is a session
  ticket the pool signed for this node and for a device this acceptor offers.
  It checks the ticket offline (HMAC, :mod:`tether._ticket`) and turns the
  ticket's slice (device, fraction, memory limit) into the worker's
  ``TETHER_SLICE``, so the worker is pinned and held to its limit. Expired,
  forged or misdirected tickets are refused with the ticket module's message,
  which the client raises as :class:`~tether.AuthenticationError`.
- :class:`PoolAgent`, a daemon thread: registers the node (devices from
  discovery, the node token authenticating it), which hands back the node's
  ticket key; then heartbeats every ``interval`` seconds with each session's
  metering figures (:class:`~tether.acceptor._meter.Meter`), and stops the
  workers of sessions the pool says have ended (drained node, expired lease).

The pool being unreachable never stops running sessions: tickets are verified
offline and heartbeats are retried; the pool ends the leases itself if the
silence outlasts its node timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tether._errors import AuthenticationError, ConnectError, PoolError
from tether._ticket import DEFAULT_CLOCK_SKEW_S, TicketError, verify
from tether.acceptor._devices import Device, Framework, frameworks_for
from tether.acceptor._limits import SliceError, SliceLimits
from tether.acceptor._meter import Meter, SessionUsage
from tether.acceptor._server import POOL_SESSION_ENV
from tether.wire import Hello

__all__ = ["PoolAgent", "TicketAuthorizer", "registration_devices"]

log = logging.getLogger("tether.acceptor.pool")

#: Seconds between node heartbeats; the pool's default node timeout is 30 s.
DEFAULT_HEARTBEAT_S = 5.0


class TicketAuthorizer:
    """The acceptor's authorizer in pool mode (see the module docstring).

    ``key`` is None until the node has registered; until then every hello is
    refused with a message that says to retry. Thread-safe: the agent thread
    sets the key, the event loop reads it.
    """

    def __init__(
        self,
        node: str,
        devices: Sequence[Device],
        *,
        clock: Callable[[], float] = time.time,
        skew_s: float = DEFAULT_CLOCK_SKEW_S,
    ) -> None:
        self.node = node
        self.devices = {d.id: d for d in devices}
        self.key: bytes | None = None
        self._clock = clock
        self._skew_s = skew_s

    def __call__(self, hello: Hello) -> tuple[bool, str, Mapping[str, str]]:
        key = self.key
        if key is None:
            return (
                False,
                f"node {self.node!r} has not registered with its pool yet; retry in a few seconds",
                {},
            )
        try:
            ticket = verify(
                key, hello.token, now=self._clock(), node=self.node, skew_s=self._skew_s
            )
        except TicketError as exc:
            return False, str(exc), {}
        # The worker sees all of the lease's devices, in the ticket's order.
        missing = [d for d in ticket.device_ids if d not in self.devices]
        if missing:
            return (
                False,
                f"the ticket names device {missing[0]!r}, which this acceptor no "
                f"longer offers (it offers {', '.join(self.devices) or 'nothing'}); "
                "ask the pool for a new slice",
                {},
            )
        try:
            limits = SliceLimits.for_devices(
                [self.devices[d] for d in ticket.device_ids],
                memory_limit=ticket.memory_bytes,
                compute_share=ticket.fraction if ticket.fraction < 1 else None,
            )
        except SliceError as exc:
            return False, f"{exc} (the ticket names {', '.join(ticket.device_ids)})", {}
        log.info(
            "admitting session %s (team %s, user %s): %s x%.2f, memory %d bytes",
            ticket.session_id,
            ticket.team,
            ticket.user,
            ",".join(limits.device_ids),
            ticket.fraction,
            ticket.memory_bytes,
        )
        return True, "", {**limits.to_env(), POOL_SESSION_ENV: ticket.session_id}


def registration_devices(
    devices: Sequence[Device], frameworks: Sequence[Framework]
) -> list[dict[str, Any]]:
    """The pool's device records (``POST /v1/nodes``) for ``devices``."""
    return [
        {
            "id": d.id,
            "vendor": d.vendor,
            "model": d.model,
            "memory": d.memory_total,
            "arch": d.arch,
            "frameworks": {f.name: f.version for f in frameworks_for(d, frameworks)},
        }
        for d in devices
    ]


class PoolAgent:
    """Registers the node and heartbeats with metering (see the module docstring).

    ``client`` is a :class:`tether.pool._client.PoolClient` holding the node
    token. ``end_session(session, reason)`` stops a worker (it must be
    thread-safe). ``on_fatal(message)`` is called once if the agent cannot go
    on (token refused, name taken): the acceptor should stop. The agent is also
    the acceptor's :class:`~tether.acceptor._server.SessionObserver`.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        address: str,
        devices: Sequence[Mapping[str, Any]],
        authorizer: TicketAuthorizer,
        end_session: Callable[[str, str], None],
        on_fatal: Callable[[str], None],
        meter: Meter | None = None,
        interval: float = DEFAULT_HEARTBEAT_S,
        replace: bool = False,
        on_registered: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.address = address
        self.devices = [dict(d) for d in devices]
        self.authorizer = authorizer
        self.end_session = end_session
        self.on_fatal = on_fatal
        self.on_registered = on_registered
        self.meter = meter if meter is not None else Meter()
        self.interval = interval
        self.replace = replace
        self.registered = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._device_of: dict[str, str] = {}
        # Final figures of sessions that ended since the last heartbeat: sent
        # once, so the pool's record of them is complete.
        self._finished: dict[str, SessionUsage] = {}
        self._thread = threading.Thread(target=self._run, name="tether-pool-agent", daemon=True)

    # ------------------------------------------------------------ observer

    def session_started(self, session: str, pid: int, env: Mapping[str, str]) -> None:
        if POOL_SESSION_ENV not in env:
            return
        limits = SliceLimits.from_env(dict(env))
        device = limits.device_id if limits is not None else "cpu:0"
        self.meter.start(session, pid, device_id=device)

    def session_ended(self, session: str) -> None:
        try:
            usage = self.meter.stop(session)
        except KeyError:
            return
        with self._lock:
            self._finished[session] = usage

    # -------------------------------------------------------------- thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.meter.close()

    def _run(self) -> None:
        try:
            if not self._register():
                return
            while not self._stop.wait(self.interval):
                self.heartbeat()
        except _Fatal as exc:
            log.error("%s", exc)
            self.on_fatal(str(exc))

    def _register(self) -> bool:
        """Register, retrying while the pool is unreachable; False when stopped."""
        from tether.pool._problems import Conflict, PoolRequestError

        delay = 0.2
        replace = self.replace
        while not self._stop.is_set():
            try:
                out = self.client.register_node(
                    self.name, self.address, self.devices, replace=replace
                )
            except ConnectError as exc:
                log.warning("%s; retrying in %.0fs", exc, delay)
            except AuthenticationError as exc:
                raise _Fatal(f"the pool refused this node's token: {exc}") from None
            except Conflict as exc:
                raise _Fatal(
                    f"cannot register node {self.name!r}: {exc} "
                    "(if this acceptor restarted, run it with --replace)"
                ) from None
            except PoolRequestError as exc:
                raise _Fatal(f"the pool refused this node's registration: {exc}") from None
            except PoolError as exc:
                log.warning("%s; retrying in %.0fs", exc, delay)
            else:
                self.authorizer.key = bytes.fromhex(out["ticket_key"])
                log.info(
                    "registered node %s at %s with %s (%s)",
                    self.name,
                    self.address,
                    self.client.url,
                    ", ".join(d["id"] for d in self.devices),
                )
                self.registered.set()
                if self.on_registered is not None:
                    self.on_registered()
                return True
            self._stop.wait(delay)
            delay = min(delay * 2, self.interval)
        return False

    def heartbeat(self) -> None:
        """One heartbeat with metering; re-registers if the pool lost the node."""
        from tether.pool._problems import NotFound

        self.meter.sample_all()
        live = self.meter.snapshot()
        with self._lock:
            finished = dict(self._finished)
        figures = {**finished, **live}
        sessions = [{"session_id": sid, **u.to_dict()} for sid, u in figures.items()]
        try:
            out = self.client.node_heartbeat(self.name, sessions=sessions)
        except NotFound:
            log.warning("the pool does not know node %s any more; registering again", self.name)
            self.replace = True
            self._register()
            return
        except AuthenticationError as exc:
            raise _Fatal(f"the pool refused this node's token: {exc}") from None
        except (ConnectError, PoolError) as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        with self._lock:
            for sid in finished:
                self._finished.pop(sid, None)
        for sid in out.get("ended_sessions", []):
            if sid in live:
                self.end_session(sid, "the pool ended its lease")
        if out.get("status") == "lost":
            log.warning("the pool had marked node %s lost; registering again", self.name)
            self.replace = True
            self._register()


class _Fatal(Exception):
    pass
