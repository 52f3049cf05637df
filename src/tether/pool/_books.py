"""The pool's books: what each team holds, what it spent this month, its quota.

:class:`TeamBooks` is the accounting half of :class:`~tether.pool.PoolState`:
the state machine tells it when a lease opens and closes, and asks it whether a
team may take more (:func:`~tether.pool._quota.check_quota` does the
arithmetic). Pure, like the state: the caller passes the time.

Month accounting never walks a team's leases: per team it keeps the closed
leases' device-seconds this month, plus, for its open leases,
``(open_units * (now - month_start) - open_offset) / SHARE_SCALE``, where
``open_offset`` sums ``units * (max(start, month_start) - month_start)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tether.pool._events import Refused
from tether.pool._model import Lease, Quota
from tether.pool._quota import QuotaDecision, TeamUse, check_quota
from tether.pool._request import SliceRequest
from tether.pool._usage import month_bounds
from tether.pool._values import SHARE_SCALE, share_units

__all__ = ["TeamBooks", "quota_refusal"]


@dataclass(slots=True, eq=False)
class _Team:
    share_units: int = 0
    memory_bytes: int = 0
    closed_unit_seconds: float = 0.0
    open_offset: float = 0.0


class TeamBooks:
    """Teams' open share and memory, their device-seconds this month, and quotas.

    ``share`` maps a team to the share units it holds now; the request queue
    reads it for its fair order (it is kept in step, never copied).
    """

    def __init__(self) -> None:
        self.month_start, self.month_end = month_bounds(0.0)
        self.share: dict[str, int] = {}
        self._teams: dict[str, _Team] = {}
        self._quotas: dict[str, Quota] = {}

    def roll_month(self, now: float) -> None:
        """Start the calendar month that holds ``now``: this month's spending starts at 0."""
        self.month_start, self.month_end = month_bounds(now)
        for team in self._teams.values():
            team.closed_unit_seconds = 0.0
            team.open_offset = 0.0  # every open lease now counts from the new month's start

    def count_open(self, lease: Lease, sign: int) -> None:
        """Add (``sign=+1``) or take away (``-1``) an open lease's share and memory."""
        team = self._teams.setdefault(lease.team, _Team())
        units = lease.share_units
        team.share_units += sign * units
        team.memory_bytes += sign * lease.total_memory_bytes
        team.open_offset += sign * units * max(lease.start - self.month_start, 0.0)
        self.share[lease.team] = team.share_units

    def count_closed(self, lease: Lease, end: float) -> None:
        """Book the part of ``lease`` up to ``end`` that falls in this month as spent."""
        team = self._teams.setdefault(lease.team, _Team())
        span = end - max(lease.start, self.month_start)
        if span > 0:
            team.closed_unit_seconds += span * lease.share_units

    def use(self, team: str, now: float) -> TeamUse:
        """What ``team`` holds at ``now`` and has used this month (open leases up to now)."""
        t = self._teams.get(team)
        if t is None:
            return TeamUse(team=team)
        open_us = t.share_units * (now - self.month_start) - t.open_offset
        return TeamUse(
            team=team,
            share_units=t.share_units,
            memory_bytes=t.memory_bytes,
            month_device_seconds=(t.closed_unit_seconds + open_us) / SHARE_SCALE,
        )

    # ------------------------------------------------------------------ quotas

    def set_quota(self, quota: Quota) -> None:
        self._quotas[quota.team] = quota

    def quota(self, team: str) -> Quota | None:
        return self._quotas.get(team)

    def quotas(self) -> list[Quota]:
        return [self._quotas[t] for t in sorted(self._quotas)]

    def never(self, req: SliceRequest, *, count: int = 1) -> QuotaDecision | None:
        """A refusal when ``count`` slices like ``req`` alone are over a concurrent limit
        (waiting cannot help); a group asks with its ``min_count``."""
        quota = self._quotas.get(req.team)
        if quota is None:
            return None
        if req.count is not None:
            units = SHARE_SCALE * req.count
        elif req.fraction is not None:
            units = share_units(req.fraction)
        else:
            units = 0  # a memory-only share depends on the device: the memory limit decides
        memory = req.memory_bytes or 0
        decision = check_quota(
            replace(quota, max_device_hours_per_month=None),
            TeamUse(team=req.team),
            request_share_units=units * count,
            request_memory_bytes=memory * count,
        )
        return None if decision.allowed else decision


def quota_refusal(req: SliceRequest, decision: QuotaDecision) -> Refused:
    """The :class:`Refused` decision for a request that ``decision`` turned down."""
    message = decision.message
    if decision.limit in ("max_share", "max_memory_bytes") and decision.used == 0:
        message += " (the request alone is over the team's limit)"
    return Refused(
        request_id=req.id,
        code="quota",
        team=req.team,
        message=message,
        limit=decision.limit,
        used=decision.used,
        limit_value=decision.limit_value,
        left=decision.left,
    )
