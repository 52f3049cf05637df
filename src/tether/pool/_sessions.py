"""Sessions: asking the pool for a slice, watching it, keeping it alive and
letting it go; and the signed tickets that let a client into its node.

A session is a request that is queued, placed (a live lease) or ended. Changes
go through the core's :meth:`~tether.pool._core.ServiceCore.mutate`;
reads go to the database directly.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from tether._ticket import SessionTicket, TicketError, verify_any
from tether._ticket import issue as issue_ticket
from tether.pool._accounts import new_id
from tether.pool._auth import Principal
from tether.pool._core import ServiceCore
from tether.pool._db import Tx
from tether.pool._directory import require_team, require_user, visible_team_ids
from tether.pool._events import (
    Decision,
    Event,
    LeaseEnded,
    LeaseHeartbeat,
    LeaseReleased,
    Placed,
    Refused,
    RequestCancelled,
    SliceRequested,
)
from tether.pool._model import Lease
from tether.pool._orders import SliceOrder
from tether.pool._persist import NewSession
from tether.pool._request import SliceRequest
from tether.pool._session_store import SessionRow, session_lease
from tether.pool._session_views import SessionView, TicketCheck
from tether.pool._state import PoolState
from tether.pool._values import PoolInputError, PoolNotFoundError
from tether.poolapi import Forbidden, Gone, NotFound, PoolRequestError
from tether.poolapi import Refused as RefusedError

__all__ = ["Sessions"]


class Sessions:
    """Requesting, reading, heartbeating and releasing sessions; their tickets."""

    def __init__(self, core: ServiceCore) -> None:
        self._core = core
        self._store = core.store

    def request_slice(self, principal: Principal, order: SliceOrder) -> SessionView:
        """Place, queue or refuse ``order`` (RefusedError). Returns the session."""
        require_user(principal)
        assert principal.user_id is not None and principal.user_name is not None
        team_name, team_id = self.resolve_team(principal, order.team)
        session_id = new_id()
        request = filed_request(order, id=session_id, team=team_name, user=principal.user_name)
        policy = order.policy
        stored = {**request.to_dict(), "policy": policy}
        new = NewSession(
            id=session_id,
            team_id=team_id,
            user_id=principal.user_id,
            request=stored,
            priority=request.priority,
        )

        name = order.name

        def work(tx: Tx, state: PoolState, now: float) -> tuple[Refused | None, _Placement]:
            decisions = self._core.handle(
                state, SliceRequested(now=now, request=request, policy=policy)
            )
            self._core.persist(tx, decisions, new)
            if name is not None:
                self._store.set_session_name_tx(tx, session_id, name)
            placed = next(
                (d for d in decisions if isinstance(d, Placed) and d.lease.id == session_id), None
            )
            if placed is None:
                return refusal_of(decisions, session_id), None
            return None, (placed, self._core.registration_in_change(tx, placed.lease.node))

        refused, placement = self._core.mutate(work)
        if refused is not None:
            raise refused_error(refused)
        if placement is None or new.seq is None:
            return self.session(principal, session_id)  # queued: read back, with its place
        # Placed: the answer is what was written, with no read back.
        placed, registration = placement
        row = placed_row(new, placed.lease, name=name, team=team_name, user=principal.user_name)
        return self.with_ticket(SessionView.of(row, placed.address), row, registration)

    def team_for(self, principal: Principal, team: str | None) -> tuple[str, str]:
        """(name, id) of the team a user's order naming ``team`` is for; Forbidden
        for a node's token, else as :meth:`resolve_team`."""
        require_user(principal)
        return self.resolve_team(principal, team)

    def resolve_team(self, principal: Principal, team: str | None) -> tuple[str, str]:
        """(name, id) of the team a request is for: ``team``, else the user's only one."""
        if len(principal.team_names) == len(principal.team_ids):
            # The user's teams were read with the token: no query for their own.
            mine_ids = {name: team_id for team_id, name in principal.team_names}
            if team in mine_ids or (team is None and len(mine_ids) == 1):
                name = team if team is not None else next(iter(mine_ids))
                return name, mine_ids[name]
        with self._store.db.transaction() as tx:
            ids = self._store.team_ids_tx(tx)
        names = {v: k for k, v in ids.items()}
        mine = sorted(names[t] for t in principal.team_ids if t in names)
        if team is None:
            if len(mine) == 1:
                return mine[0], ids[mine[0]]
            if not mine:
                raise Forbidden(
                    f"user {principal.user_name!r} belongs to no team: ask an admin to add you"
                )
            raise PoolRequestError(
                f"you belong to several teams ({', '.join(mine)}): name one with team"
            )
        if team not in ids:
            raise NotFound(f"no team named {team!r}")
        if not principal.can_see_team(ids[team]):
            raise Forbidden(f"you are not a member of team {team!r}")
        return team, ids[team]

    def session(self, principal: Principal, session_id: str) -> SessionView:
        with self._store.db.transaction() as tx:
            row = self._store.session_tx(tx, session_id)
            address = registration = None
            if row.state == "placed" and row.node_name is not None:
                found = self._store.node_address_tx(tx, row.node_name)
                if found is not None:
                    address, registration = found
        require_team(principal, row.team_id, what=f"session {session_id!r}")
        view = SessionView.of(row, address)
        if row.state == "queued":
            return replace(view, position=self.position(session_id))
        if row.state == "placed" and principal.user_id == row.user_id:
            return self.with_ticket(view, row, registration)
        return view

    def position(self, session_id: str) -> int | None:
        return self._core.queue_position(session_id)

    def with_ticket(
        self, view: SessionView, row: SessionRow, registration: str | None
    ) -> SessionView:
        """``view`` (of ``row``) with a fresh ticket for its lease, if it holds one."""
        lease = session_lease(row)
        if lease is None:
            return view
        now = self._core.clock()
        ticket = SessionTicket(
            session_id=row.id,
            node=lease.node,
            device_ids=lease.device_ids,
            fraction=lease.fraction,
            memory_bytes=lease.memory_bytes,
            team=row.team,
            user=row.user,
            issued_at=now,
            expires_at=now + self._core.config.ticket_ttl_s,
        )
        # Signed with the key of the node's current registration: an acceptor that
        # registered before (or someone who re-registered the node since) refuses it.
        text = issue_ticket(self._core.signing_key(lease.node, registration), ticket)
        return replace(view, ticket=text, ticket_expires_at=ticket.expires_at)

    def verify_ticket(self, principal: Principal, ticket: str, node: str | None) -> TicketCheck:
        """Check a ticket as its acceptor would (for acceptors that ask, and for admins)."""
        if principal.kind == "node":
            node = principal.node_name or node
        elif not principal.is_admin:
            raise Forbidden("only node tokens and admins can verify tickets")
        if node is None:
            raise PoolRequestError("name the node the ticket is for")
        with self._store.db.transaction() as tx:
            registration = self._core.registration_of(tx, node)
        now = self._core.clock()
        try:
            claims = verify_any(
                self._core.node_keys(node, registration, now), ticket, now=now, node=node
            )
        except TicketError as exc:
            raise PoolRequestError(
                f"invalid ticket: {exc}", {"ticket_error": type(exc).__name__}
            ) from None
        return TicketCheck(claims=claims)

    def sessions(
        self, principal: Principal, *, state: str | None = None, team: str | None = None
    ) -> list[SessionView]:
        states = (state,) if state else ("queued", "placed")
        if state is not None and state not in ("queued", "placed", "ended"):
            raise PoolRequestError("state must be queued, placed or ended")
        with self._store.db.transaction() as tx:
            team_ids = visible_team_ids(self._store, tx, principal, team)
            rows = self._store.sessions_tx(tx, states=states, team_ids=team_ids)
            addresses = {n.name: n.address for n in self._store.nodes_tx(tx)}
        out = []
        for row in rows:
            view = SessionView.of(row, addresses.get(row.node_name or ""))
            if row.state == "queued":
                view = replace(view, position=self.position(row.id))
            out.append(view)
        return out

    def heartbeat(self, principal: Principal, session_id: str) -> SessionView:
        row = self._own_session(principal, session_id)
        if row.state != "ended":

            def work(tx: Tx, state: PoolState, now: float) -> None:
                # Decided under the lock: the lease may have ended since the read above.
                if _is_queued(state, session_id):
                    return
                try:
                    state.lease(session_id)
                except PoolNotFoundError:
                    return
                event = LeaseHeartbeat(now=now, lease_id=session_id)
                self._core.feed(tx, state, event)

            self._core.mutate(work)
        current = self.session(principal, session_id)
        if current.state == "ended":
            raise Gone(
                f"session {session_id} has ended ({current.end_reason})",
                {"reason": current.end_reason},
            )
        return current

    def release(self, principal: Principal, session_id: str) -> SessionView:
        """End a lease or withdraw a queued request; releasing an ended one is harmless."""
        row = self._own_session(principal, session_id)
        if row.state == "ended":
            return self.session(principal, session_id)

        def work(tx: Tx, state: PoolState, now: float) -> Lease | None:
            event: Event
            if _is_queued(state, session_id):
                event = RequestCancelled(now=now, request_id=session_id)
            else:
                try:
                    state.lease(session_id)
                except PoolNotFoundError:
                    return None  # it ended meanwhile
                event = LeaseReleased(now=now, lease_id=session_id)
            decisions = self._core.feed(tx, state, event)
            return next(
                (d.lease for d in decisions if isinstance(d, LeaseEnded) and d.lease.id == row.id),
                None,
            )

        ended = self._core.mutate(work)
        if ended is None or row.state != "placed":
            return self.session(principal, session_id)
        # The lease read above, as its end was just written: no read back.
        return SessionView.of(
            replace(row, state="ended", ended_at=ended.end, end_reason=ended.end_reason), None
        )

    def _own_session(self, principal: Principal, session_id: str) -> SessionRow:
        with self._store.db.transaction() as tx:
            row = self._store.session_tx(tx, session_id)
        require_team(principal, row.team_id, what=f"session {session_id!r}")
        if not principal.is_admin and principal.user_id != row.user_id:
            raise Forbidden(f"session {session_id} belongs to {row.user}; only they can change it")
        return row


#: What a placement wrote: its decision and the node's registration (for the ticket).
_Placement = tuple[Placed, str | None] | None


def placed_row(
    new: NewSession, lease: Lease, *, name: str | None, team: str, user: str | None
) -> SessionRow:
    """The row :func:`~tether.pool._persist.persist` wrote for ``new`` placed as
    ``lease``, as reading it back would give it (``new.seq`` must be known)."""
    assert new.seq is not None and user is not None
    devices = tuple(sorted((d, lease.fraction, lease.memory_bytes) for d in lease.device_ids))
    return SessionRow(
        id=new.id,
        team_id=new.team_id,
        team=team,
        user_id=new.user_id,
        user=user,
        state="placed",
        # As stored: through JSON (tuples come back as lists).
        request=json.loads(json.dumps(new.request, sort_keys=True)),
        priority=new.priority,
        seq=new.seq,
        submitted_at=lease.start,
        queue_deadline=None,
        node_name=lease.node,
        started_at=lease.start,
        last_heartbeat=lease.start,
        ended_at=None,
        end_reason=None,
        message=None,
        share=sum(s for _d, s, _m in devices),
        memory_bytes=sum(m for _d, _s, m in devices),
        devices=devices,
        metering=None,
        name=name,
    )


def filed_request(order: SliceOrder, *, id: str, team: str, user: str) -> SliceRequest:
    """The request the pool files for ``order`` (a session's, or a group's shape);
    PoolRequestError if the resolved team or user cannot be in a request."""
    try:
        return order.request(id=id, team=team, user=user)
    except PoolInputError as exc:
        raise PoolRequestError(str(exc)) from None


def refusal_of(decisions: list[Decision], request_id: str) -> Refused | None:
    """The decision that refused ``request_id``, if one did."""
    for d in decisions:
        if isinstance(d, Refused) and d.request_id == request_id:
            return d
    return None


def refused_error(refused: Refused, **extra: Any) -> RefusedError:
    """The API's error for a refusal: its reason, team and quota figures (and ``extra``)."""
    detail: dict[str, Any] = {"reason": refused.code, "team": refused.team}
    for key in ("limit", "used", "limit_value", "left"):
        value = getattr(refused, key)
        if value is not None:
            detail[key] = value
    return RefusedError(refused.message, {**detail, **extra})


def _is_queued(state: PoolState, session_id: str) -> bool:
    try:
        state.queue_position(session_id)
    except PoolNotFoundError:
        return False
    return True
