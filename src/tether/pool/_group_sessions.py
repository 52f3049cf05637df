"""Groups: asking the pool for many slices of one shape in one call, reading
them back with their members, cancelling them, and their usage.

The policy is :mod:`tether.pool._groups`; rows are :mod:`tether.pool._group_store`.
Changes go through the core's :meth:`~tether.pool._core.ServiceCore.mutate`
(one serialised transaction: the group row, the decision and every member's
lease are written together or not at all); reads go to the database directly.
A group is named by its id or, for its team's members, by its name (the most
recent group of that name).
"""

from __future__ import annotations

from dataclasses import replace

from tether.pool._accounting import month_span
from tether.pool._accounts import new_id
from tether.pool._auth import Principal
from tether.pool._core import ServiceCore
from tether.pool._db import Tx
from tether.pool._directory import require_team, require_user, visible_team_ids
from tether.pool._events import (
    Event,
    GroupRequested,
    LeaseReleased,
    Refused,
    RequestCancelled,
)
from tether.pool._group_request import GroupRequest
from tether.pool._group_store import GroupRow
from tether.pool._orders import GroupOrder
from tether.pool._session_store import SessionRow, session_lease
from tether.pool._session_views import GroupView, SessionView
from tether.pool._sessions import Sessions, filed_request, refusal_of, refused_error
from tether.pool._state import PoolState
from tether.pool._usage import compute_usage
from tether.pool._usage_views import GroupUsageView
from tether.pool._values import PoolInputError, PoolNotFoundError
from tether.poolapi._problems import Forbidden, NotFound, PoolRequestError

__all__ = ["Groups"]


class Groups:
    """Group requests; see the module docstring. Members are sessions: read
    and shown by ``sessions``."""

    def __init__(self, core: ServiceCore, sessions: Sessions) -> None:
        self._core = core
        self._store = core.store
        self._sessions = sessions

    def request_group(self, principal: Principal, order: GroupOrder) -> GroupView:
        """Place, queue or refuse ``order`` as one unit (RefusedError). Returns the group."""
        require_user(principal)
        assert principal.user_id is not None and principal.user_name is not None
        team_name, team_id = self._sessions.resolve_team(principal, order.shape.team)
        group_id = new_id()
        shape = filed_request(order.shape, id=group_id, team=team_name, user=principal.user_name)
        policy = order.shape.policy
        try:
            group = GroupRequest(
                shape=shape,
                name=order.name or group_id,
                min_count=order.min_count_or_all,
                max_count=order.max_count,
                member_ids=tuple(f"{group_id}-{i}" for i in range(order.max_count)),
            )
        except PoolInputError as exc:
            raise PoolRequestError(str(exc)) from None

        def work(tx: Tx, state: PoolState, now: float) -> Refused | None:
            self._store.insert_group_tx(
                tx,
                group,
                team_id=team_id,
                user_id=principal.user_id or "",
                policy=policy,
                now=now,
                seq=self._core.next_seq(tx),
            )
            decisions = self._core.handle(
                state, GroupRequested(now=now, group=group, policy=policy)
            )
            self._core.persist(tx, decisions)
            return refusal_of(decisions, group_id)

        refused = self._core.mutate(work)
        if refused is not None:
            raise refused_error(refused, group=group_id)
        return self.group(principal, group_id)

    # ------------------------------------------------------------------ reads

    def _find_group(self, tx: Tx, principal: Principal, ref: str) -> GroupRow:
        rows = self._store.groups_tx(tx, group_id=ref)
        if rows:
            row = rows[0]
            require_team(principal, row.team_id, what=f"group {ref!r}")
            return row
        team_ids = visible_team_ids(self._store, tx, principal, None)
        by_name = self._store.groups_tx(tx, team_ids=team_ids, name=ref)
        if not by_name:
            raise NotFound(f"no group with id or name {ref!r}")
        return by_name[-1]

    def group(self, principal: Principal, ref: str) -> GroupView:
        """A group with its members (their sessions; tickets for the group's own user)."""
        with self._store.db.transaction() as tx:
            row = self._find_group(tx, principal, ref)
            members = self._store.group_members_tx(tx, row.id)
            nodes = self._store.node_addresses_tx(tx)
        position = self._sessions.position(row.id) if row.state == "queued" else None
        items = []
        for m in members:
            address, registration = nodes.get(m.node_name or "", (None, None))
            item = SessionView.of(m, address if m.state == "placed" else None)
            item = replace(item, index=m.group_index)
            if m.state == "placed" and principal.user_id == m.user_id:
                item = self._sessions.with_ticket(item, m, registration)
            items.append(item)
        return _group_view(row, _counts(members), position=position, members=tuple(items))

    def group_member(self, principal: Principal, ref: str, index: int) -> SessionView:
        """One member of a group as its session (with a fresh ticket for its user):
        what a Kubernetes pod asks for, without reading every other member."""
        with self._store.db.transaction() as tx:
            row = self._find_group(tx, principal, ref)
            member_id = self._store.group_member_id_tx(tx, row.id, index)
        if member_id is None:
            raise NotFound(f"group {row.name} has no placed member {index} (state {row.state})")
        return replace(self._sessions.session(principal, member_id), index=index)

    def groups(
        self, principal: Principal, *, team: str | None = None, state: str | None = None
    ) -> list[GroupView]:
        """Groups of your teams (admins: all), oldest first, without their members."""
        if state is not None and state not in ("queued", "placed", "ended"):
            raise PoolRequestError("state must be queued, placed or ended")
        with self._store.db.transaction() as tx:
            team_ids = visible_team_ids(self._store, tx, principal, team)
            rows = self._store.groups_tx(tx, team_ids=team_ids)
            counts = self._store.group_member_counts_tx(tx, [g.id for g in rows])
        listed = []
        for row in rows:
            view = _group_view(row, counts.get(row.id, (0, 0)))
            if state is None or view.state == state:
                if view.state == "queued":
                    view = replace(view, position=self._sessions.position(view.id))
                listed.append(view)
        return listed

    # ----------------------------------------------------------------- cancel

    def cancel_group(self, principal: Principal, ref: str) -> GroupView:
        """Withdraw a waiting group, or release every open member lease; idempotent."""
        with self._store.db.transaction() as tx:
            row = self._find_group(tx, principal, ref)
            member_ids = [m.id for m in self._store.group_members_tx(tx, row.id)]
        if not principal.is_admin and principal.user_id != row.user_id:
            raise Forbidden(f"group {row.name} belongs to {row.user}; only they can cancel it")

        def work(tx: Tx, state: PoolState, now: float) -> None:
            events: list[Event] = []
            try:
                state.queue_position(row.id)
                events.append(RequestCancelled(now=now, request_id=row.id))
            except PoolNotFoundError:
                pass
            for sid in member_ids:
                try:
                    state.lease(sid)
                except PoolNotFoundError:
                    continue  # ended already
                events.append(LeaseReleased(now=now, lease_id=sid))
            for event in events:
                self._core.feed(tx, state, event)

        self._core.mutate(work)
        return self.group(principal, row.id)

    # ------------------------------------------------------------------ usage

    def group_usage(
        self, principal: Principal, *, team: str | None, month: str | None
    ) -> list[GroupUsageView]:
        """Usage per group in a month (UTC; default this one): one row per group,
        its members' device-seconds, memory-GiB-seconds and peak share summed."""
        require_user(principal)
        now = self._core.clock()
        month, start, end = month_span(month, now)
        with self._store.db.transaction() as tx:
            team_ids = visible_team_ids(self._store, tx, principal, team)
            sessions = self._store.sessions_tx(
                tx, states=("placed", "ended"), team_ids=team_ids, overlapping=(start, end)
            )
            members: dict[str, list[SessionRow]] = {}
            for s in sessions:
                if s.group_id is not None:
                    members.setdefault(s.group_id, []).append(s)
            rows = {
                g.id: g for g in self._store.groups_tx(tx, team_ids=team_ids) if g.id in members
            }
        out = []
        for group_id, sessions_of in members.items():
            g = rows.get(group_id)
            if g is None:
                continue
            leases = [lease for s in sessions_of if (lease := session_lease(s)) is not None]
            totals = compute_usage(leases, now=now, group_by=("team", "month"), months=[month])
            for r in totals:
                assert r.team is not None and r.month is not None
                out.append(
                    GroupUsageView(
                        month=r.month,
                        team=r.team,
                        group=g.name,
                        group_id=g.id,
                        user=g.user,
                        members=len(sessions_of),
                        device_seconds=r.device_seconds,
                        memory_gib_seconds=r.memory_gib_seconds,
                        sessions=r.sessions,
                        peak_share=r.peak_share,
                    )
                )
        out.sort(key=lambda r: (r.team, r.group, r.group_id))
        return out


def _counts(members: list[SessionRow]) -> tuple[int, int]:
    running = sum(1 for m in members if m.state == "placed")
    return running, len(members) - running


def _group_view(
    row: GroupRow,
    counts: tuple[int, int],
    *,
    position: int | None = None,
    members: tuple[SessionView, ...] | None = None,
) -> GroupView:
    """A group as the API shows it; ``counts``: its members (open, ended). A group
    placed once whose members have all ended is ended."""
    shape = {k: v for k, v in row.request.get("shape", {}).items() if v is not None}
    for key in ("id", "team", "user", "priority", "wait"):
        shape.pop(key, None)
    running, ended = counts
    state = row.state
    if state == "placed" and running == 0:
        state = "ended"
    return GroupView(
        id=row.id,
        name=row.name,
        team=row.team,
        user=row.user,
        state=state,
        min_count=row.min_count,
        max_count=row.max_count,
        placed_count=row.placed_count,
        running=running,
        ended=ended,
        request=shape,
        policy=row.request.get("policy"),
        submitted_at=row.submitted_at,
        queue_deadline=row.queue_deadline,
        placed_at=row.placed_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        reason=row.message,
        position=position,
        members=members,
    )
