"""What :class:`~tether.pool._state.PoolState` does with a request for a slice.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
Admission decides each new request: refused ``unsatisfiable`` if no registered
device could ever hold it, ``quota`` if its team is over a limit it can never
meet or spent its month; placed if a device has room and the team's concurrent
limits allow it; else queued (or refused, when it may not wait). A team's later
request never overtakes its own earlier one at the same or higher priority.
It also serves the wait queue when room appears (fair order, backfill past a
team whose request does not fit), cancels waiting requests and times them out.

It reads the state's placement index (shared, the state's
:class:`~tether.pool._placement.Inventory`), books and queue, and never opens a
lease itself: opening one touches the state's leases and nodes too, so it names
the request, the placement, the time and the decisions to the state's ``place``.
"""

from __future__ import annotations

from collections.abc import Callable

from tether.pool._books import TeamBooks, quota_refusal
from tether.pool._events import (
    Decision,
    GroupQueued,
    GroupRequested,
    Queued,
    Refused,
    RequestCancelled,
    SliceRequested,
)
from tether.pool._group_request import GroupRequest
from tether.pool._groups import fit_group, group_never, group_refusal, open_group
from tether.pool._model import PlacementPolicy, PoolConfig
from tether.pool._placement import Inventory, Placement
from tether.pool._queue import QueueEntry, RequestQueue
from tether.pool._quota import check_quota
from tether.pool._request import SliceRequest

__all__ = ["Admission", "Place"]

#: The state's way to open a lease: (request, placement, time, decisions to append to).
Place = Callable[[SliceRequest, Placement, float, list[Decision]], None]


class Admission:
    """Requests for slices: decided on arrival, queued, served; see the module docstring.

    ``inventory``, ``books`` and ``queue`` are the state's (shared, kept in step),
    ``place`` how it opens a lease. Event methods raise nothing: the state checks
    events before it changes anything.
    """

    def __init__(
        self,
        config: PoolConfig,
        inventory: Inventory,
        books: TeamBooks,
        queue: RequestQueue,
        place: Place,
    ) -> None:
        self._config = config
        self._inv = inventory
        self._books = books
        self._queue = queue
        self._place = place
        self._seq = 0

    # ================================================================== events

    def requested(self, event: SliceRequested, now: float, out: list[Decision]) -> bool:
        req = event.request
        policy = event.policy or self._config.policy
        if not self._inv.could_ever_fit(req):
            out.append(
                Refused(
                    request_id=req.id,
                    code="unsatisfiable",
                    team=req.team,
                    message=f"no device in the pool can ever hold {req.describe()}",
                )
            )
            return False
        never = self._books.never(req)
        if never is not None:
            out.append(quota_refusal(req, never))
            return False
        quota = self._books.quota(req.team)
        use = self._books.use(req.team, now)
        monthly = check_quota(quota, use, request_share_units=0, request_memory_bytes=0)
        if not monthly.allowed:
            out.append(quota_refusal(req, monthly))
            return False
        timeout = (
            req.queue_timeout_s
            if req.queue_timeout_s is not None
            else self._config.default_queue_timeout_s
        )
        may_wait = req.wait and timeout > 0
        if may_wait and self._queue.team_waiting(req.team, req.priority):
            self._enqueue(
                req, event.policy, now, timeout, f"behind earlier requests of team {req.team}", out
            )
            return False
        placement = self._inv.find(req, policy)
        if placement is not None:
            decision = check_quota(
                quota,
                use,
                request_share_units=placement.total_share_units,
                request_memory_bytes=placement.total_memory_bytes,
            )
            if decision.allowed:
                self._place(req, placement, now, out)
                return False
            if not may_wait:
                out.append(quota_refusal(req, decision))
                return False
            self._enqueue(req, event.policy, now, timeout, decision.message, out)
            return False
        reason = f"no matching device has room for {req.describe()} now"
        if not may_wait:
            out.append(Refused(request_id=req.id, code="capacity", team=req.team, message=reason))
            return False
        self._enqueue(req, event.policy, now, timeout, reason, out)
        return False

    def cancelled(self, event: RequestCancelled, now: float, out: list[Decision]) -> bool:
        entry = self._queue.remove(event.request_id)
        out.append(
            Refused(
                request_id=entry.id,
                code="cancelled",
                team=entry.request.team,
                message="the request was cancelled while it waited",
            )
        )
        return True  # the team's later requests are no longer blocked behind it

    def expire(self, now: float, out: list[Decision]) -> bool:
        """Refuse ``timeout`` every request that waited past its deadline.

        Returns whether that made room (a team's later requests are unblocked).
        """
        room = False
        for entry in self._queue.pop_expired(now):
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

    def serve(self, now: float, out: list[Decision]) -> None:
        """Place the queued requests that fit now, in the queue's fair order."""
        if not len(self._queue):
            return
        blocked: set[str] = set()
        failed: set[tuple[object, ...]] = set()
        order = self._queue.order(self._books.share)
        teams_waiting = {e.request.team for e in order}
        for entry in order:
            req = entry.request
            if req.team in blocked:
                continue
            policy = entry.policy or self._config.policy
            if entry.group is not None:
                if not self._serve_group(entry.group, policy, now, out):
                    blocked.add(req.team)
                if len(blocked) == len(teams_waiting):
                    break
                continue
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
                quota = self._books.quota(req.team)
                use = self._books.use(req.team, now)
                monthly = check_quota(quota, use, request_share_units=0, request_memory_bytes=0)
                if not monthly.allowed:
                    self._queue.remove(req.id)
                    out.append(quota_refusal(req, monthly))
                    continue
                placement = self._inv.find(req, policy)
                if placement is None:
                    failed.add(shape)
                    blocked.add(req.team)
                else:
                    decision = check_quota(
                        quota,
                        use,
                        request_share_units=placement.total_share_units,
                        request_memory_bytes=placement.total_memory_bytes,
                    )
                    if decision.allowed:
                        self._queue.remove(req.id)
                        self._place(req, placement, now, out)
                    else:
                        blocked.add(req.team)
            if len(blocked) == len(teams_waiting):
                break

    # ================================================================== groups

    def group_requested(self, event: GroupRequested, now: float, out: list[Decision]) -> bool:
        """Refuse, place or queue a group as one unit (see :mod:`tether.pool._groups`)."""
        group = event.group
        req = group.shape
        policy = event.policy or self._config.policy
        capacity = self._inv.capacity_for(req)
        if capacity < group.min_count:
            out.append(
                Refused(
                    request_id=group.id,
                    code="unsatisfiable",
                    team=req.team,
                    message=(
                        f"group {group.name}: the pool's devices, even all empty, hold at most "
                        f"{capacity} of {req.describe()}; the group needs at least "
                        f"{group.min_count}"
                    ),
                )
            )
            return False
        never = group_never(self._books, group)
        if never is not None:
            out.append(group_refusal(group, never))
            return False
        monthly = check_quota(
            self._books.quota(req.team),
            self._books.use(req.team, now),
            request_share_units=0,
            request_memory_bytes=0,
        )
        if not monthly.allowed:
            out.append(group_refusal(group, monthly))
            return False
        timeout = (
            req.queue_timeout_s
            if req.queue_timeout_s is not None
            else self._config.default_queue_timeout_s
        )
        may_wait = req.wait and timeout > 0
        if may_wait and self._queue.team_waiting(req.team, req.priority):
            reason = f"behind earlier requests of team {req.team}"
            self._enqueue_group(group, event.policy, now, timeout, reason, out)
            return False
        fit = fit_group(self._inv, self._books, group, policy, now)
        if len(fit.placements) >= group.min_count:
            out.append(open_group(group, fit, now, self._place))
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
                out.append(
                    Refused(request_id=group.id, code="capacity", team=req.team, message=reason)
                )
            return False
        self._enqueue_group(group, event.policy, now, timeout, reason, out)
        return False

    def _serve_group(
        self, group: GroupRequest, policy: PlacementPolicy, now: float, out: list[Decision]
    ) -> bool:
        """Place a waiting group if it fits now; False when it still waits (or left)."""
        req = group.shape
        monthly = check_quota(
            self._books.quota(req.team),
            self._books.use(req.team, now),
            request_share_units=0,
            request_memory_bytes=0,
        )
        if not monthly.allowed:
            self._queue.remove(group.id)
            out.append(group_refusal(group, monthly))
            return True
        fit = fit_group(self._inv, self._books, group, policy, now)
        if len(fit.placements) < group.min_count:
            return False
        self._queue.remove(group.id)
        out.append(open_group(group, fit, now, self._place))
        return True

    def _enqueue_group(
        self,
        group: GroupRequest,
        policy: PlacementPolicy | None,
        now: float,
        timeout: float,
        reason: str,
        out: list[Decision],
    ) -> None:
        entry = QueueEntry(
            request=group.shape,
            enqueued_at=now,
            deadline=now + timeout,
            seq=self._seq,
            policy=policy,
            group=group,
        )
        self._seq += 1
        self._queue.push(entry)
        out.append(
            GroupQueued(
                group=group,
                position=self._queue.position(group.id, self._books.share),
                reason=reason,
                enqueued_at=now,
                deadline=entry.deadline,
            )
        )

    def restore(self, entry: QueueEntry) -> None:
        """Put back a waiting request as the store kept it (with its ``seq``)."""
        self._queue.push(entry)
        self._seq = max(self._seq, entry.seq + 1)

    # ================================================================== mechanics

    def _enqueue(
        self,
        req: SliceRequest,
        policy: PlacementPolicy | None,
        now: float,
        timeout: float,
        reason: str,
        out: list[Decision],
    ) -> None:
        entry = QueueEntry(
            request=req, enqueued_at=now, deadline=now + timeout, seq=self._seq, policy=policy
        )
        self._seq += 1
        self._queue.push(entry)
        position = self._queue.position(req.id, self._books.share)
        out.append(
            Queued(
                request=req,
                position=position,
                reason=reason,
                enqueued_at=now,
                deadline=entry.deadline,
            )
        )
