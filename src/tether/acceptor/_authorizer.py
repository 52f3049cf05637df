"""Which hellos a pool's acceptor admits: session tickets the pool signed for this node.

:class:`TicketAuthorizer` admits a hello only when its token is a session ticket the
pool signed for this node and for a device this acceptor offers. It checks the ticket
offline (HMAC, :mod:`tether._ticket`) and turns the ticket's slice (device, fraction,
memory limit) into the worker's ``TETHER_SLICE``, so the worker is pinned and held to
its limit. Expired, forged or misdirected tickets are refused with the ticket module's
message, which the client raises as :class:`~tether.AuthenticationError`. With a
``checker`` (the pool agent's :meth:`~tether.acceptor._poolagent.PoolAgent.admit`) each
ticket is also checked with the pool at connect: one ticket, one session; a released
lease's ticket opens nothing; a pool that is slow or down does not stop new sessions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tether._errors import AuthenticationError, ConnectError, PoolError
from tether._ticket import (
    DEFAULT_CLOCK_SKEW_S,
    SessionTicket,
    TicketError,
    TicketForged,
    verify_any,
)
from tether.acceptor._devices import Device
from tether.acceptor._limits import SliceError, SliceLimits
from tether.acceptor._server import POOL_SESSION_ENV
from tether.wire import Hello

__all__ = ["Checker", "TicketAuthorizer", "Verdict"]

log = logging.getLogger("tether.acceptor.pool")

#: Seconds the check at connect may take before the acceptor admits on the
#: ticket alone (the pool being slow or down must not stop new sessions).
ADMIT_TIMEOUT_S = 3.0

Verdict = tuple[bool, str, Mapping[str, str]]
#: The check at connect: ``checker(ticket_text)`` asks the pool to admit the
#: ticket and returns the node's keys now; raises AuthenticationError or a
#: PoolRequestError to refuse, ConnectError or PoolError when the pool cannot say.
Checker = Callable[[str], Sequence[bytes]]


class TicketAuthorizer:
    """The acceptor's authorizer in pool mode (see the module docstring).

    ``keys`` is empty until the node has registered; until then every hello is
    refused with a message that says to retry. Thread-safe: the agent thread
    sets the keys, the event loop reads them.

    A ticket opens one session: its session id is remembered (until the ticket
    could not be valid any more) and a second hello with it is refused, even
    after the first session ended. With a ``checker`` (the agent's
    :meth:`PoolAgent.admit`) each admission is also checked with the pool at
    connect, so a ticket whose lease was released or lost opens nothing; then
    the call returns an awaitable verdict. When the pool cannot be reached the
    ticket alone decides (logged): sessions must not depend on the pool's uptime.
    """

    def __init__(
        self,
        node: str,
        devices: Sequence[Device],
        *,
        clock: Callable[[], float] = time.time,
        skew_s: float = DEFAULT_CLOCK_SKEW_S,
        checker: Checker | None = None,
    ) -> None:
        self.node = node
        self.devices = {d.id: d for d in devices}
        self.keys: tuple[bytes, ...] = ()
        self.checker = checker
        self._clock = clock
        self._skew_s = skew_s
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}  # session id -> when its ticket is dead anyway

    @property
    def key(self) -> bytes | None:
        """The current key (None before registration)."""
        keys = self.keys
        return keys[0] if keys else None

    @key.setter
    def key(self, value: bytes | None) -> None:
        self.keys = () if value is None else (value,)

    def __call__(self, hello: Hello) -> Verdict | Awaitable[Verdict]:
        if not self.keys:
            return (
                False,
                f"node {self.node!r} has not registered with its pool yet; retry in a few seconds",
                {},
            )
        try:
            ticket = self._verify(hello.token)
        except TicketForged as exc:
            if self.checker is None:
                return False, str(exc), {}
            # Perhaps signed with a key this node has not heard of yet (the pool's
            # secret was just rotated): the pool knows, and hands the keys over.
            return self._ask_first(hello.token)
        except TicketError as exc:
            return False, str(exc), {}
        verdict = self._admit_locally(ticket)
        if not verdict[0] or self.checker is None:
            return verdict
        return self._checked(hello.token, ticket, verdict)

    def _verify(self, token: str) -> SessionTicket:
        return verify_any(self.keys, token, now=self._clock(), node=self.node, skew_s=self._skew_s)

    def _admit_locally(self, ticket: SessionTicket) -> Verdict:
        """Slice checks and the one-time rule; marks the ticket used if admitted."""
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
        now = self._clock()
        with self._lock:
            for sid in [s for s, dead in self._used.items() if dead < now]:
                del self._used[sid]
            if ticket.session_id in self._used:
                return (
                    False,
                    f"session {ticket.session_id}'s ticket was used already: one ticket opens "
                    "one session; ask the pool for a new slice",
                    {},
                )
            self._used[ticket.session_id] = ticket.expires_at + self._skew_s
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

    def _ask_pool(self, token: str) -> str | None:
        """Run the checker (in a thread): None if admitted or the pool cannot say,
        else the refusal's reason."""
        from tether.poolapi import PoolRequestError

        assert self.checker is not None
        try:
            keys = self.checker(token)
        except (AuthenticationError, PoolRequestError) as exc:
            return str(exc)
        except (ConnectError, PoolError) as exc:
            log.warning("cannot check a ticket with the pool (%s): admitting on the ticket", exc)
            return None
        if keys:
            self.keys = tuple(keys)
        return None

    async def _checked(self, token: str, ticket: SessionTicket, verdict: Verdict) -> Verdict:
        refusal = await _in_thread(self._ask_pool, token)
        if refusal is None:
            return verdict
        return False, refusal, {}

    async def _ask_first(self, token: str) -> Verdict:
        refusal = await _in_thread(self._ask_pool, token)
        if refusal is not None:
            return False, refusal, {}
        try:
            ticket = self._verify(token)
        except TicketError as exc:
            return False, str(exc), {}
        return self._admit_locally(ticket)


async def _in_thread(fn: Callable[[str], str | None], arg: str) -> str | None:
    import asyncio

    return await asyncio.to_thread(fn, arg)
