"""Usage accounting computed from leases alone, so a restart loses nothing.

For each group (by default team, user and calendar month, UTC) it reports:

- ``device_seconds``: seconds held times the share (a 0.5 slice for an hour is
  1800; two whole devices for an hour is 7200);
- ``memory_gib_seconds``: seconds held times the memory held, in GiB;
- ``sessions``: leases *started* in the group's period;
- ``peak_share``: the largest share the group held at any instant.

A lease spanning a month boundary is split at it. An open lease counts up to
``now`` -- or, for a pool that crashed (``crashed=True``), up to its last
heartbeat, the last moment anyone knew it was alive. Pure functions; time is
passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tether._units import parse_month
from tether.pool._model import Lease
from tether.pool._values import SHARE_SCALE, PoolInputError

__all__ = [
    "UsageRow",
    "compute_usage",
    "lease_interval",
    "month_bounds",
    "month_key",
    "month_range",
]

GroupKey = Literal["team", "user", "month"]
_GROUP_KEYS = ("team", "user", "month")


def month_bounds(t: float) -> tuple[float, float]:
    """The [start, end) of the UTC calendar month containing ``t``, as epoch seconds."""
    d = datetime.fromtimestamp(t, UTC)
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    end = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def month_key(t: float) -> str:
    """``"YYYY-MM"`` of the UTC month containing ``t``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m")


def month_range(month: str) -> tuple[float, float]:
    """The [start, end) of the UTC month ``"YYYY-MM"``; :class:`PoolInputError` if it is not one."""
    text = parse_month(month, error=PoolInputError)
    start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    return month_bounds(start.timestamp())


def lease_interval(lease: Lease, now: float, *, crashed: bool = False) -> tuple[float, float]:
    """The [start, end] a lease counts for: closed at ``end``; open up to ``now``
    (or up to its last heartbeat when ``crashed``); never before its start."""
    if lease.end is not None:
        end = lease.end
    elif crashed:
        end = lease.last_heartbeat
    else:
        end = max(now, lease.last_heartbeat)
    return lease.start, max(end, lease.start)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """One group's usage; a field not grouped by is None."""

    team: str | None
    user: str | None
    month: str | None
    device_seconds: float
    memory_gib_seconds: float
    sessions: int
    peak_share: float

    @property
    def device_hours(self) -> float:
        return self.device_seconds / 3600.0


def _split_by_month(start: float, end: float) -> Iterable[tuple[str, float, float]]:
    t = start
    while True:
        m_start, m_end = month_bounds(t)
        piece_end = min(end, m_end)
        yield month_key(m_start), t, piece_end
        if piece_end >= end:
            return
        t = m_end


def compute_usage(
    leases: Iterable[Lease],
    *,
    now: float,
    group_by: Sequence[GroupKey] = ("team", "user", "month"),
    crashed: bool = False,
    months: Iterable[str] | None = None,
) -> list[UsageRow]:
    """Usage per group, sorted by (team, user, month).

    ``group_by``: any of ``team``, ``user``, ``month`` (empty: one total row).
    ``months``: keep only these ``"YYYY-MM"`` months. ``crashed``: close open
    leases at their last heartbeat instead of ``now``. Raises
    :class:`PoolInputError` for an unknown group key.
    """
    for key in group_by:
        if key not in _GROUP_KEYS:
            raise PoolInputError(f"usage can be grouped by {_GROUP_KEYS}, not {key!r}")
    keep = set(months) if months is not None else None
    by_team, by_user, by_month = "team" in group_by, "user" in group_by, "month" in group_by

    GroupT = tuple[str | None, str | None, str | None]
    dev_s: dict[GroupT, float] = {}
    mem_s: dict[GroupT, float] = {}
    sessions: dict[GroupT, int] = {}
    edges: dict[GroupT, list[tuple[float, int]]] = {}

    for lease in leases:
        start, end = lease_interval(lease, now, crashed=crashed)
        units = lease.share_units
        gib = lease.total_memory_bytes / (1 << 30)
        team = lease.team if by_team else None
        user = lease.user if by_user else None
        first = True
        for month, t0, t1 in _split_by_month(start, end):
            started_here = first
            first = False
            if keep is not None and month not in keep:
                continue
            group = (team, user, month if by_month else None)
            span = t1 - t0
            dev_s[group] = dev_s.get(group, 0.0) + span * units / SHARE_SCALE
            mem_s[group] = mem_s.get(group, 0.0) + span * gib
            if started_here:
                sessions[group] = sessions.get(group, 0) + 1
            else:
                sessions.setdefault(group, 0)
            if t1 > t0:
                lst = edges.setdefault(group, [])
                lst.append((t0, units))
                lst.append((t1, -units))
            else:
                edges.setdefault(group, [])

    rows = []
    for group in sorted(dev_s, key=lambda g: tuple(x or "" for x in g)):
        # Ends sort before starts at the same instant: back-to-back leases do
        # not overlap.
        peak = cur = 0
        for _, delta in sorted(edges.get(group, ())):
            cur += delta
            peak = max(peak, cur)
        rows.append(
            UsageRow(
                team=group[0],
                user=group[1],
                month=group[2],
                device_seconds=dev_s[group],
                memory_gib_seconds=mem_s[group],
                sessions=sessions.get(group, 0),
                peak_share=peak / SHARE_SCALE,
            )
        )
    return rows


def team_month_device_seconds(leases: Iterable[Lease], team: str, *, now: float) -> float:
    """Fraction-weighted device-seconds of ``team`` in the UTC month of ``now``.

    Open leases count up to ``now``.
    """
    m_start, _ = month_bounds(now)
    total = 0.0
    for lease in leases:
        if lease.team != team:
            continue
        start, end = lease_interval(lease, now)
        span = min(end, now) - max(start, m_start)
        if span > 0:
            total += span * lease.share_units / SHARE_SCALE
    return total
