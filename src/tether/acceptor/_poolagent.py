"""An acceptor's side of the pool: tickets in, registration and heartbeats out.

``tether serve --pool URL`` runs two pieces from here next to the
:class:`~tether.acceptor._server.Acceptor`:

- :class:`~tether.acceptor._authorizer.TicketAuthorizer` (its own module) admits
  a hello only when its token is a session ticket the pool signed for this node
  and for a device this acceptor offers.
- :class:`PoolAgent`, a daemon thread: registers the node (devices from
  discovery, the node token authenticating it), which hands back this
  registration's id and ticket key(s); then heartbeats every ``interval``
  seconds with each session's metering figures
  (:class:`~tether.acceptor._meter.Meter`) and, once a session has ended, the
  time it ended (the pool closes its lease then, however late the report);
  it stops the workers of sessions the pool says have ended (released, drained,
  expired lease) and takes the node's current keys from each answer (the
  pool's secret may have been rotated). It is also the authorizer's check at
  connect (:meth:`PoolAgent.admit`): one ticket, one session; a released
  lease's ticket opens nothing.

The pool being unreachable never stops running sessions: tickets are verified
offline and heartbeats are retried; the pool ends the leases itself if the
silence outlasts its node timeout.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tether._errors import AuthenticationError, ConnectError, PoolError
from tether.acceptor._authorizer import ADMIT_TIMEOUT_S, TicketAuthorizer
from tether.acceptor._devices import Device, Framework, frameworks_for
from tether.acceptor._limits import SliceLimits
from tether.acceptor._meter import Meter, SessionUsage
from tether.acceptor._server import POOL_SESSION_ENV

__all__ = ["PoolAgent", "registration_devices"]

log = logging.getLogger("tether.acceptor.pool")

#: Seconds between node heartbeats; the pool's default node timeout is 30 s.
DEFAULT_HEARTBEAT_S = 5.0


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

    ``client`` is a :class:`tether.poolapi.PoolClient` holding the node
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
        # Final figures of sessions that ended since the last heartbeat, with the
        # time each ended (this clock): sent until the pool has them, so the pool
        # closes each lease when its session really ended, however late.
        self._finished: dict[str, tuple[SessionUsage, float]] = {}
        self.registration: str | None = None
        self._thread = threading.Thread(target=self._run, name="tether-pool-agent", daemon=True)

    # ------------------------------------------------------------ observer

    def session_started(self, session: str, pid: int, env: Mapping[str, str]) -> None:
        if POOL_SESSION_ENV not in env:
            return
        limits = SliceLimits.from_env(dict(env))
        device = limits.device_id if limits is not None else "cpu:0"
        self.meter.start(session, pid, device_id=device)

    def session_ended(self, session: str) -> None:
        ended_at = time.time()
        try:
            usage = self.meter.stop(session)
        except KeyError:
            return
        with self._lock:
            self._finished[session] = (usage, ended_at)

    # -------------------------------------------------------------- thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.meter.close()
        self.client.close()  # the connections it kept to the pool

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
        from tether.poolapi import Conflict, PoolRequestError

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
                if exc.detail.get("reason") == "live" and replace:
                    # An unnamed token may not take over a live node: wait until
                    # the pool has marked the old registration lost.
                    wait = float(exc.detail.get("retry_after_s") or self.interval)
                    log.warning("%s; retrying in %.0fs", exc, min(max(wait, 1.0), 30.0))
                    self._stop.wait(min(max(wait, 1.0), 30.0))
                    continue
                raise _Fatal(
                    f"cannot register node {self.name!r}: {exc} "
                    "(if this acceptor restarted, run it with --replace)"
                ) from None
            except PoolRequestError as exc:
                raise _Fatal(f"the pool refused this node's registration: {exc}") from None
            except PoolError as exc:
                log.warning("%s; retrying in %.0fs", exc, delay)
            else:
                self.registration = out.get("registration")
                keys = out.get("ticket_keys") or [out["ticket_key"]]
                self.authorizer.keys = tuple(bytes.fromhex(k) for k in keys)
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
        from tether.poolapi import Conflict, NotFound

        self.meter.sample_all()
        live = self.meter.snapshot()
        with self._lock:
            finished = dict(self._finished)
        sessions = [{"session_id": sid, **u.to_dict()} for sid, u in live.items()]
        sessions += [
            {"session_id": sid, **u.to_dict(), "ended_at": at}
            for sid, (u, at) in finished.items()
            if sid not in live
        ]
        body: dict[str, Any] = {"sent_at": time.time(), "sessions": sessions}
        if self.registration is not None:
            body["registration"] = self.registration
        try:
            out = self.client.request("POST", f"/v1/nodes/{_quote(self.name)}/heartbeat", body)
        except NotFound:
            log.warning("the pool does not know node %s any more; registering again", self.name)
            self.replace = True
            self._register()
            return
        except Conflict as exc:
            if exc.detail.get("reason") == "replaced":
                raise _Fatal(f"stopping: {exc}") from None
            log.warning("heartbeat refused: %s", exc)
            return
        except AuthenticationError as exc:
            raise _Fatal(f"the pool refused this node's token: {exc}") from None
        except (ConnectError, PoolError) as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        with self._lock:
            for sid in finished:
                self._finished.pop(sid, None)
        keys = out.get("ticket_keys")
        if keys:
            self.authorizer.keys = tuple(bytes.fromhex(k) for k in keys)
        for sid in out.get("ended_sessions", []):
            if sid in live:
                self.end_session(sid, _end_reason(self.name, out.get("status")))
        if out.get("status") == "lost":
            log.warning("the pool had marked node %s lost; registering again", self.name)
            self.replace = True
            self._register()

    def admit(self, ticket: str) -> list[bytes]:
        """The check at connect (the authorizer's ``checker``): the pool admits the
        ticket (its lease open, the ticket unused) and returns this node's keys.

        Raises what the pool's client raises: AuthenticationError or a
        PoolRequestError to refuse (410 lease ended, 409 used), ConnectError or
        PoolError when the pool cannot say. Bounded by :data:`ADMIT_TIMEOUT_S`.
        """
        if self.registration is None:
            raise PoolError("not registered yet")
        client = copy.copy(self.client)
        client.timeout = min(getattr(client, "timeout", ADMIT_TIMEOUT_S), ADMIT_TIMEOUT_S)
        out = client.request(
            "POST",
            f"/v1/nodes/{_quote(self.name)}/admit",
            {"registration": self.registration, "ticket": ticket},
        )
        return [bytes.fromhex(k) for k in out.get("ticket_keys", [])]


def _quote(part: str) -> str:
    import urllib.parse

    return urllib.parse.quote(part, safe="")


class _Fatal(Exception):
    pass


def _end_reason(node: str, status: object) -> str:
    """Why the pool ended a lease, as far as the heartbeat answer tells."""
    if status == "drained":
        return f"the pool ended its lease: an admin drained node {node}"
    return "the pool ended its lease (released by its owner or an admin, or expired)"
