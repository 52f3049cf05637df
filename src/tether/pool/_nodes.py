"""The pool's node inventory: acceptors registering and heartbeating their
nodes, admins cordoning and draining them, and the listings of nodes and devices.

Changes go through the core's :meth:`~tether.pool._core.ServiceCore.mutate`
like every other; the listings read the database directly.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from tether._ticket import TicketError, verify_any
from tether.pool._auth import Principal
from tether.pool._core import ServiceCore, Unchanged
from tether.pool._db import Tx
from tether.pool._directory import require_admin, require_node
from tether.pool._events import (
    Event,
    LeaseFinished,
    LeaseHeartbeat,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeRegistered,
    NodeUncordoned,
)
from tether.pool._metering import SessionReport, bounded
from tether.pool._model import DeviceSpec, NodeSpec
from tether.pool._state import PoolState
from tether.pool._values import PoolInputError, PoolNotFoundError
from tether.pool._views import (
    Admission,
    DeviceView,
    NodeBeatReply,
    NodeRegistration,
    NodeStatusView,
    NodeView,
)
from tether.poolapi import Conflict, Forbidden, Gone, PoolRequestError

__all__ = ["Nodes"]


class Nodes:
    """Registering, heartbeating, administering and listing nodes and their devices."""

    def __init__(self, core: ServiceCore) -> None:
        self._core = core
        self._store = core.store

    def register_node(
        self,
        principal: Principal,
        *,
        name: str,
        address: str,
        devices: Sequence[DeviceSpec],
        replace: bool,
        sent_at: float | None,
    ) -> NodeRegistration:
        """Register (or take over, with ``replace``) node ``name``.

        Who may take over a node that is alive: only a token *named* for it. An
        unnamed node token (one shared by many acceptors) may register a new name
        or one the pool has marked lost, never replace a live one: otherwise any
        node could take over any other and send its clients elsewhere. Each
        registration gets a fresh random id (returned here only; the database
        keeps its hash) and so a fresh ticket key: whoever re-registers a node gets
        a key the acceptor already serving it does not accept.

        ``devices``: the node's devices as records (the API builds them from the
        body once, after the same token check). Errors: 403 a token that may not
        act for ``name``; 400 a bad address or a device id given twice; 409 a
        live node not to be taken over; 400 the node's clock too far off.
        """
        require_node(principal, name)
        try:
            spec = NodeSpec(id=name, address=address, devices=tuple(devices))
        except PoolInputError as exc:
            raise PoolRequestError(str(exc)) from None
        registration = secrets.token_hex(16)

        def work(tx: Tx, state: PoolState, now: float) -> NodeRegistration:
            self._check_skew(sent_at, now)
            try:
                existing = state.node(name)
            except PoolNotFoundError:
                existing = None
            alive = existing is not None and not existing.lost
            if alive and principal.node_name is None:
                assert existing is not None
                left = existing.last_heartbeat + self._core.config.policy.node_timeout_s - now
                raise Unchanged(
                    Conflict(
                        f"node {name!r} is registered and alive, and an unnamed node token "
                        "cannot take over a live node; it can register the name once the "
                        f"pool has marked it lost (in about {max(left, 0):.0f}s of silence). "
                        f"To take it over at once, use a token named for it "
                        f"(tether admin token create --node {name}).",
                        {"reason": "live", "retry_after_s": max(left, 0.0)},
                    )
                )
            if alive and not replace:
                assert existing is not None
                raise Unchanged(
                    Conflict(
                        f"node {name!r} is already registered and alive (last heartbeat "
                        f"{now - existing.last_heartbeat:.0f}s ago); another acceptor may be using "
                        "this name. Register with replace=true to take it over."
                    )
                )
            self._core.feed(tx, state, NodeRegistered(now=now, node=spec))
            reg_hash = self._core.registration_hash(registration)
            self._store.set_registration_tx(tx, name, reg_hash)
            self._core.registration_changed(name)
            keys = self._core.node_keys(name, reg_hash, now)
            record = state.node(name)
            return NodeRegistration(
                name=name,
                status=record.status,
                last_heartbeat=record.last_heartbeat,
                registration=registration,
                ticket_keys=tuple(k.hex() for k in keys),
            )

        return self._core.mutate(work)

    def _check_registration(self, tx: Tx, name: str, registration: str | None) -> str | None:
        """The node's registration hash, if ``registration`` is its current one.

        Raises (inside the transaction) Conflict with reason ``replaced`` if it is
        not: the node was registered again since, by another acceptor.
        """
        current = self._core.registration_of(tx, name)
        if registration is None:
            return None
        if current is None or not hmac.compare_digest(
            self._core.registration_hash(registration), current
        ):
            raise Unchanged(
                Conflict(
                    f"node {name!r} was registered again since this acceptor registered it "
                    "(another acceptor holding this node's token took it over); this "
                    "acceptor's registration is void",
                    {"reason": "replaced"},
                )
            )
        return current

    def node_heartbeat(
        self,
        principal: Principal,
        name: str,
        *,
        sent_at: float,
        device_ids: list[str] | None,
        sessions: Sequence[SessionReport],
        registration: str | None = None,
    ) -> NodeBeatReply:
        """The node is alive; renew the leases of the sessions it runs.

        A session reported with ``ended_at`` (the acceptor's clock, which the skew
        check keeps within ``heartbeat_skew_s`` of the pool's; NTP keeps it far
        closer) has finished: its lease ends then, however late the report comes
        (a late heartbeat's ``sent_at`` cannot tell delay from skew, so it is not
        used to shift it); it is never renewed.
        Metering figures are bounded by the lease's real times. With the
        ``registration`` id the answer also carries the node's ticket keys (they
        change when the pool's secret is rotated). Reports of sessions need it,
        and so does every heartbeat of an unnamed token (Forbidden otherwise).
        """
        require_node(principal, name)
        if registration is None and (principal.node_name is None or sessions):
            # Reports renew, end and bill leases: only the acceptor that registered
            # may make them, not anyone else who holds (or shares) the node's token.
            raise Forbidden(
                "show the node's registration id (from its registration's answer) with "
                "heartbeats that report sessions, and with every heartbeat of an unnamed "
                "node token"
            )

        def work(tx: Tx, state: PoolState, now: float) -> NodeBeatReply:
            self._check_skew(sent_at, now)
            reg_hash = self._check_registration(tx, name, registration)
            event = NodeHeartbeat(
                now=now, node_id=name, device_ids=tuple(device_ids) if device_ids else None
            )
            self._core.feed(tx, state, event)
            ended = []
            for report in sessions:
                sid, ended_at, figures = report.session_id, report.ended_at, report.figures
                try:
                    lease = state.lease(sid)
                except PoolNotFoundError:
                    if ended_at is None:
                        ended.append(sid)
                    else:
                        self._late_finish(tx, name, sid, min(ended_at, now), figures)
                    continue
                if lease.node != name:
                    ended.append(sid)
                    continue
                if ended_at is not None:
                    end = min(max(ended_at, lease.start), now)
                    self._core.feed(tx, state, LeaseFinished(now=now, lease_id=sid, end=end))
                    self._store.session_metering_tx(tx, sid, bounded(figures, end - lease.start))
                    continue
                self._core.feed(tx, state, LeaseHeartbeat(now=now, lease_id=sid))
                self._store.session_heartbeat_tx(tx, sid, now, bounded(figures, now - lease.start))
            keys = None
            if reg_hash is not None:
                keys = tuple(k.hex() for k in self._core.node_keys(name, reg_hash, now))
            return NodeBeatReply(
                status=state.node(name).status, ended_sessions=tuple(ended), ticket_keys=keys
            )

        return self._core.mutate(work)

    def _late_finish(
        self, tx: Tx, node: str, sid: str, end: float, figures: dict[str, Any]
    ) -> None:
        """A finished session whose lease the pool had already ended: if it ended it
        later than the session really ended (released or expired after an outage),
        move the end back to the measured one."""
        span = self._store.ended_span_tx(tx, sid, node)
        if span is None:
            return
        start, ended_at = span
        end = max(end, start)
        if ended_at is not None and end < ended_at:
            self._store.finish_earlier_tx(tx, sid, end)
            self._core.forget_state()  # the books count the old end
        final = min(end, ended_at) if ended_at is not None else end
        self._store.session_metering_tx(tx, sid, bounded(figures, final - start))

    def admit(
        self, principal: Principal, name: str, *, registration: str, ticket: str
    ) -> Admission:
        """The acceptor's check at connect: is this ticket's lease open, and unused?

        Marks the session connected (one ticket, one session, across acceptor
        restarts too) and returns the node's ticket keys. Errors: 400 a ticket not
        signed for this registration, 409 used already (``used``) or the
        registration replaced (``replaced``), 410 the lease has ended.
        """
        require_node(principal, name)

        def work(tx: Tx, state: PoolState, now: float) -> Admission:
            reg_hash = self._check_registration(tx, name, registration)
            keys = self._core.node_keys(name, reg_hash, now)
            try:
                claims = verify_any(keys, ticket, now=now, node=name)
            except TicketError as exc:
                raise Unchanged(
                    PoolRequestError(f"invalid ticket: {exc}", {"ticket_error": type(exc).__name__})
                ) from None
            sid = claims.session_id
            use = self._store.ticket_use_tx(tx, sid)
            try:
                state.lease(sid)
            except PoolNotFoundError:
                reason = use[0] if use is not None else None
                raise Unchanged(
                    Gone(
                        f"session {sid}'s lease has ended ({reason or 'unknown'}): its ticket "
                        "opens nothing; ask the pool for a new slice",
                        {"reason": reason},
                    )
                ) from None
            if use is None or use[1] is not None:
                raise Unchanged(
                    Conflict(
                        f"session {sid}'s ticket was used already: one ticket opens one "
                        "session; ask the pool for a new slice",
                        {"reason": "used"},
                    )
                )
            self._store.connect_session_tx(tx, sid, now)
            return Admission(session_id=sid, ticket_keys=tuple(k.hex() for k in keys))

        return self._core.mutate(work)

    def node_admin(self, principal: Principal, name: str, action: str) -> NodeStatusView:
        require_admin(principal)
        make: dict[str, Callable[[float], Event]] = {
            "cordon": lambda now: NodeCordoned(now=now, node_id=name),
            "drain": lambda now: NodeDrained(now=now, node_id=name),
            "uncordon": lambda now: NodeUncordoned(now=now, node_id=name),
        }
        if action not in make:
            raise PoolRequestError(f"unknown node action {action!r}: cordon, drain or uncordon")

        def work(tx: Tx, state: PoolState, now: float) -> NodeStatusView:
            self._core.feed(tx, state, make[action](now))
            record = state.node(name)
            return NodeStatusView(
                name=name, status=record.status, last_heartbeat=record.last_heartbeat
            )

        return self._core.mutate(work)

    def _check_skew(self, sent_at: float | None, now: float) -> None:
        if sent_at is None:
            return
        skew = sent_at - now
        if abs(skew) > self._core.config.heartbeat_skew_s:
            raise Unchanged(
                PoolRequestError(
                    f"clock skew: the node's clock is {skew:+.1f}s off the pool's (at most "
                    f"{self._core.config.heartbeat_skew_s:g}s allowed); synchronise it with NTP",
                    {"skew_s": skew, "max_skew_s": self._core.config.heartbeat_skew_s},
                )
            )

    def nodes(self) -> list[NodeView]:
        """Every node with its devices and what open leases hold of them."""
        with self._store.db.transaction() as tx:
            nodes = self._store.nodes_tx(tx)
            devices = self._store.devices_tx(tx)
            alloc = self._store.allocation_tx(tx)
        return [
            NodeView(
                name=n.name,
                address=n.address,
                status="lost" if n.lost else {"active": "ready"}.get(n.schedulable, n.schedulable),
                registered_at=n.registered_at,
                last_heartbeat=n.last_heartbeat,
                devices=tuple(DeviceView.of(d, alloc) for d in devices if d.node_name == n.name),
            )
            for n in nodes
        ]

    def devices(self) -> list[DeviceView]:
        return [d for n in self.nodes() for d in n.devices]
