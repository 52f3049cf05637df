"""Team quotas: may this team take this much more? Pure arithmetic, no state.

:func:`check_quota` compares a team's current use plus a request against its
:class:`~tether.pool.Quota` and returns a :class:`QuotaDecision` that names the
first limit crossed, the use, the limit and what is left, in a sentence a
person can act on::

    team ml: concurrent share 1.50 of 2.00 used, request 0.75 exceeds by 0.25

Limits are checked in a fixed order (monthly device-hours, concurrent share,
concurrent memory) so the same input always names the same limit. Shares are
compared in integer share units, so 4 x 0.25 exactly fills a 1.00 limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.pool._model import Quota
from tether.pool._values import SHARE_SCALE, format_memory, format_share, share_units

__all__ = ["QuotaDecision", "TeamUse", "check_quota"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamUse:
    """What a team holds now and has spent this month.

    ``share_units``: sum of its open leases' shares (1/SHARE_SCALE device units).
    ``memory_bytes``: sum of its open leases' memory. ``month_device_seconds``:
    fraction-weighted device-seconds in the current calendar month, open leases
    counted up to now.
    """

    team: str
    share_units: int = 0
    memory_bytes: int = 0
    month_device_seconds: float = 0.0

    @property
    def share(self) -> float:
        return self.share_units / SHARE_SCALE


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaDecision:
    """The answer of :func:`check_quota`.

    ``allowed`` is True when no limit is crossed; then ``limit`` is None.
    Otherwise ``limit`` is the field of :class:`Quota` that was crossed, and
    ``used``, ``limit_value``, ``requested``, ``left`` are its figures in its
    unit (devices for ``max_share``, bytes for ``max_memory_bytes``,
    device-hours for ``max_device_hours_per_month``). ``monthly`` is True when
    the limit is the monthly one: waiting in the queue does not help then.
    """

    allowed: bool
    team: str
    message: str = ""
    limit: str | None = None
    used: float | None = None
    limit_value: float | None = None
    requested: float | None = None
    left: float | None = None

    @property
    def monthly(self) -> bool:
        return self.limit == "max_device_hours_per_month"


def check_quota(
    quota: Quota | None, use: TeamUse, *, request_share_units: int, request_memory_bytes: int
) -> QuotaDecision:
    """Decide whether ``use`` plus a request of that share and memory stays within ``quota``.

    ``quota`` None means the team has no limits. The monthly limit refuses any
    new request once the month's device-hours are spent (or would be, at zero
    left); it cannot know how long the request will run, so it never refuses
    on what a request *might* use.
    """
    team = use.team
    if quota is None:
        return QuotaDecision(allowed=True, team=team)
    if quota.max_device_hours_per_month is not None:
        used_h = use.month_device_seconds / 3600.0
        limit_h = quota.max_device_hours_per_month
        if used_h >= limit_h:
            return QuotaDecision(
                allowed=False,
                team=team,
                limit="max_device_hours_per_month",
                used=used_h,
                limit_value=limit_h,
                requested=0.0,
                left=0.0,
                message=(
                    f"team {team}: device-hours this month {used_h:.2f} of {limit_h:.2f} used, "
                    "none left until the month ends (UTC)"
                ),
            )
    if quota.max_share is not None:
        limit_u = share_units(quota.max_share)
        if use.share_units + request_share_units > limit_u:
            left_u = max(limit_u - use.share_units, 0)
            over_u = use.share_units + request_share_units - limit_u
            return QuotaDecision(
                allowed=False,
                team=team,
                limit="max_share",
                used=use.share_units / SHARE_SCALE,
                limit_value=limit_u / SHARE_SCALE,
                requested=request_share_units / SHARE_SCALE,
                left=left_u / SHARE_SCALE,
                message=(
                    f"team {team}: concurrent share {format_share(use.share_units)} of "
                    f"{format_share(limit_u)} used, request {format_share(request_share_units)} "
                    f"exceeds by {format_share(over_u)}"
                ),
            )
    if quota.max_memory_bytes is not None:
        limit_b = quota.max_memory_bytes
        if use.memory_bytes + request_memory_bytes > limit_b:
            left_b = max(limit_b - use.memory_bytes, 0)
            over_b = use.memory_bytes + request_memory_bytes - limit_b
            return QuotaDecision(
                allowed=False,
                team=team,
                limit="max_memory_bytes",
                used=float(use.memory_bytes),
                limit_value=float(limit_b),
                requested=float(request_memory_bytes),
                left=float(left_b),
                message=(
                    f"team {team}: concurrent memory {format_memory(use.memory_bytes)} of "
                    f"{format_memory(limit_b)} used, request {format_memory(request_memory_bytes)} "
                    f"exceeds by {format_memory(over_b)}"
                ),
            )
    return QuotaDecision(allowed=True, team=team)
