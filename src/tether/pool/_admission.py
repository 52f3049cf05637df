"""What :class:`~tether.pool._state.PoolState` does with requests: transition functions.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
Each function takes the state's tables (:class:`~tether.pool._tables.PoolTables`),
an event, its time and the decisions to append to, and returns whether it
made room. None raises: the state checks events before it changes anything.

A new request is refused ``unsatisfiable`` if no registered device could ever
hold it, ``quota`` if its team is over a limit it can never meet or spent its
month; placed if a device has room and the team's concurrent limits allow it;
else queued (or refused, when it may not wait). A team's later request never
overtakes its own earlier one at the same or higher priority. A group
(:mod:`tether.pool._groups`) goes through the same steps as one unit. When room
appears, :func:`serve` tries the queue in its fair order (backfill past a team
whose request does not fit); waiting requests are cancelled and time out here.

The quota questions are asked in one way each (:func:`_month_refusal`,
:func:`_allows`): a single request and a group differ only in how much they ask.
"""

from __future__ import annotations

from typing import Literal

from tether.pool._books import quota_refusal
from tether.pool._events import (
    Decision,
    GroupPlaced,
    GroupQueued,
    GroupRequested,
    Placed,
    Queued,
    Refused,
    RequestCancelled,
    SliceRequested,
)
from tether.pool._group_request import GroupRequest
from tether.pool._groups import fit_group, group_refusal
from tether.pool._model import PlacementPolicy
from tether.pool._placement import Placement
from tether.pool._queue import QueueEntry
from tether.pool._quota import QuotaDecision, check_quota
from tether.pool._request import SliceRequest
from tether.pool._tables import PoolTables

__all__ = ["cancelled", "group_requested", "requested", "restore", "serve", "time_out"]


# ================================================================== events


def requested(t: PoolTables, event: SliceRequested, now: float, out: list[Decision]) -> bool:
    req = event.request
    policy = event.policy or t.config.policy
    if not t.inventory.could_ever_fit(req):
        message = f"no device in the pool can ever hold {req.describe()}"
        out.append(Refused(request_id=req.id, code="unsatisfiable", team=req.team, message=message))
        return False
    refusal = t.books.never(req) or _month_refusal(t, req.team, now)
    if refusal is not None:
        out.append(quota_refusal(req, refusal))
        return False
    timeout, may_wait = _waiting_terms(t, req)
    if _behind_own_team(t, req, None, event.policy, now, timeout, may_wait, out):
        return False
    placement = t.inventory.find(req, policy)
    if placement is not None:
        decision = _allows(
            t, req.team, now, placement.total_share_units, placement.total_memory_bytes
        )
        if decision.allowed:
            t.open_lease(req, placement, now, out)
        elif not may_wait:
            out.append(quota_refusal(req, decision))
        else:
            _enqueue(t, req, None, event.policy, now, timeout, decision.message, out)
        return False
    reason = f"no matching device has room for {req.describe()} now"
    if not may_wait:
        out.append(Refused(request_id=req.id, code="capacity", team=req.team, message=reason))
        return False
    _enqueue(t, req, None, event.policy, now, timeout, reason, out)
    return False


def group_requested(t: PoolTables, event: GroupRequested, now: float, out: list[Decision]) -> bool:
    """Refuse, place or queue a group as one unit (see :mod:`tether.pool._groups`)."""
    group = event.group
    req = group.shape
    policy = event.policy or t.config.policy
    capacity = t.inventory.capacity_for(req)
    if capacity < group.min_count:
        message = (
            f"group {group.name}: the pool's devices, even all empty, hold at most "
            f"{capacity} of {req.describe()}; the group needs at least {group.min_count}"
        )
        out.append(
            Refused(request_id=group.id, code="unsatisfiable", team=req.team, message=message)
        )
        return False
    refusal = t.books.never(req, count=group.min_count) or _month_refusal(t, req.team, now)
    if refusal is not None:
        out.append(group_refusal(group, refusal))
        return False
    timeout, may_wait = _waiting_terms(t, req)
    if _behind_own_team(t, req, group, event.policy, now, timeout, may_wait, out):
        return False
    fit = fit_group(t.inventory, t.books, group, policy, now)
    if len(fit.placements) >= group.min_count:
        _open_group(t, group, fit.placements, now, out)
        return False
    if fit.quota is not None:
        reason = f"group {group.name}: {fit.quota.message}"
    else:
        reason = (
            f"group {group.name}: room for {len(fit.placements)} of {req.describe()} now, "
            f"needs {group.min_count}"
        )
    if not may_wait:
        if fit.quota is not None:
            out.append(group_refusal(group, fit.quota))
        else:
            out.append(Refused(request_id=group.id, code="capacity", team=req.team, message=reason))
        return False
    _enqueue(t, req, group, event.policy, now, timeout, reason, out)
    return False


def cancelled(t: PoolTables, event: RequestCancelled, now: float, out: list[Decision]) -> bool:
    entry = t.queue.remove(event.request_id)
    out.append(
        Refused(
            request_id=entry.id,
            code="cancelled",
            team=entry.request.team,
            message="the request was cancelled while it waited",
        )
    )
    return True  # the team's later requests are no longer blocked behind it


def time_out(t: PoolTables, now: float, out: list[Decision]) -> bool:
    """Refuse ``timeout`` every request that waited past its deadline.

    Returns whether that made room (a team's later requests are unblocked).
    """
    room = False
    for entry in t.queue.pop_expired(now):
        out.append(
            Refused(
                request_id=entry.id,
                code="timeout",
                team=entry.request.team,
                message=(
                    f"waited {entry.deadline - entry.enqueued_at:g}s in the queue "
                    f"without room for {entry.request.describe()}"
                ),
            )
        )
        room = True
    return room


def serve(t: PoolTables, now: float, out: list[Decision]) -> None:
    """Place the queued requests that fit now, in the queue's fair order."""
    if not len(t.queue):
        return
    blocked: set[str] = set()
    failed: set[tuple[object, ...]] = set()  # shapes that found no room: skip their likes
    order = t.queue.order(t.books.share)
    teams_waiting = {e.request.team for e in order}
    for entry in order:
        req = entry.request
        if req.team in blocked:
            continue
        policy = entry.policy or t.config.policy
        if entry.group is not None:
            if not _serve_group(t, entry.group, policy, now, out):
                blocked.add(req.team)
        else:
            shape = (
                req.constraint_key(),
                req.node,
                req.count,
                req.fraction,
                req.memory_bytes,
                policy,
            )
            if shape in failed:
                blocked.add(req.team)
            else:
                outcome = _serve_one(t, req, policy, now, out)
                if outcome == "no room":
                    failed.add(shape)
                if outcome != "left":
                    blocked.add(req.team)
        if len(blocked) == len(teams_waiting):
            break


def restore(t: PoolTables, entry: QueueEntry) -> None:
    """Put back a waiting request as the store kept it (with its ``seq``)."""
    t.queue.push(entry)
    t.seq = max(t.seq, entry.seq + 1)


# ================================================================== serving


def _serve_one(
    t: PoolTables, req: SliceRequest, policy: PlacementPolicy, now: float, out: list[Decision]
) -> Literal["left", "no room", "over quota"]:
    """Place a waiting request if it fits now. ``left``: placed, or refused for
    good; else why it still waits (``no room``: its like will not fit either)."""
    refusal = _month_refusal(t, req.team, now)
    if refusal is not None:
        t.queue.remove(req.id)
        out.append(quota_refusal(req, refusal))
        return "left"
    placement = t.inventory.find(req, policy)
    if placement is None:
        return "no room"
    if not _allows(
        t, req.team, now, placement.total_share_units, placement.total_memory_bytes
    ).allowed:
        return "over quota"
    t.queue.remove(req.id)
    t.open_lease(req, placement, now, out)
    return "left"


def _serve_group(
    t: PoolTables, group: GroupRequest, policy: PlacementPolicy, now: float, out: list[Decision]
) -> bool:
    """Place a waiting group if it fits now; False when it still waits."""
    refusal = _month_refusal(t, group.team, now)
    if refusal is not None:
        t.queue.remove(group.id)
        out.append(group_refusal(group, refusal))
        return True
    fit = fit_group(t.inventory, t.books, group, policy, now)
    if len(fit.placements) < group.min_count:
        return False
    t.queue.remove(group.id)
    _open_group(t, group, fit.placements, now, out)
    return True


def _open_group(
    t: PoolTables,
    group: GroupRequest,
    placements: tuple[Placement, ...],
    now: float,
    out: list[Decision],
) -> None:
    """Open a lease per fitted member (the first ``len(placements)`` ids), as one decision."""
    placed: list[Decision] = []
    for index, placement in enumerate(placements):
        t.open_lease(group.member(index), placement, now, placed)
    members = tuple(d for d in placed if isinstance(d, Placed))
    out.append(GroupPlaced(group=group, members=members))


# ================================================================== mechanics


def _waiting_terms(t: PoolTables, req: SliceRequest) -> tuple[float, bool]:
    """How long ``req`` may wait (its own timeout, else the pool's default), and
    whether it may wait at all."""
    timeout = (
        req.queue_timeout_s if req.queue_timeout_s is not None else t.config.default_queue_timeout_s
    )
    return timeout, req.wait and timeout > 0


def _behind_own_team(
    t: PoolTables,
    req: SliceRequest,
    group: GroupRequest | None,
    policy: PlacementPolicy | None,
    now: float,
    timeout: float,
    may_wait: bool,
    out: list[Decision],
) -> bool:
    """Queue ``req`` behind its team's earlier request at its priority or higher,
    if it may wait and there is one (a team's requests never overtake their own)."""
    if not (may_wait and t.queue.team_waiting(req.team, req.priority)):
        return False
    _enqueue(
        t, req, group, policy, now, timeout, f"behind earlier requests of team {req.team}", out
    )
    return True


def _month_refusal(t: PoolTables, team: str, now: float) -> QuotaDecision | None:
    """The refusal when ``team`` spent its month's device-hours, else None."""
    decision = _allows(t, team, now, 0, 0)
    return None if decision.allowed else decision


def _allows(
    t: PoolTables, team: str, now: float, share_units: int, memory_bytes: int
) -> QuotaDecision:
    """Whether ``team`` may take that much more share and memory at ``now``."""
    return check_quota(
        t.books.quota(team),
        t.books.use(team, now),
        request_share_units=share_units,
        request_memory_bytes=memory_bytes,
    )


def _enqueue(
    t: PoolTables,
    req: SliceRequest,
    group: GroupRequest | None,
    policy: PlacementPolicy | None,
    now: float,
    timeout: float,
    reason: str,
    out: list[Decision],
) -> None:
    """Queue a request (or a group, as one entry: ``req`` is its shape) and say so."""
    entry = QueueEntry(
        request=req,
        enqueued_at=now,
        deadline=now + timeout,
        seq=t.next_seq(),
        policy=policy,
        group=group,
    )
    t.queue.push(entry)
    position = t.queue.position(entry.id, t.books.share)
    if group is None:
        out.append(
            Queued(
                request=req,
                position=position,
                reason=reason,
                enqueued_at=now,
                deadline=entry.deadline,
            )
        )
    else:
        out.append(
            GroupQueued(
                group=group,
                position=position,
                reason=reason,
                enqueued_at=now,
                deadline=entry.deadline,
            )
        )
