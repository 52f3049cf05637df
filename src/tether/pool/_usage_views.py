"""What the pool's service answers about usage, and the figures /metrics renders.

The companions of :mod:`tether.pool._views` (its docstring says how views are
meant): usage rows per team and user, and per group, each with the
:meth:`to_json` of ``/v1/usage`` and ``/v1/usage/groups``; :class:`Statistics`
is read by :mod:`tether.pool._metrics` only (``/metrics`` is text, not JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.pool._views import JsonView

if TYPE_CHECKING:
    from tether.pool._node_store import DeviceRow, NodeRow
    from tether.pool._persist import Counters
    from tether.pool._store import QuotaRow

__all__ = ["GroupUsageView", "Statistics", "TeamHolding", "UsageView"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageView(JsonView):
    """Usage of one (month, team, user) in ``/v1/usage``; user ``*`` is the team's total."""

    month: str
    team: str
    user: str
    device_seconds: float
    memory_gib_seconds: float
    sessions: int
    peak_share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupUsageView(JsonView):
    """Usage of one group in a month (``/v1/usage/groups``): its members' sums."""

    month: str
    team: str
    group: str
    group_id: str
    user: str
    members: int
    device_seconds: float
    memory_gib_seconds: float
    sessions: int
    peak_share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamHolding:
    """What a team holds now: share, device memory and open leases."""

    team: str
    share: float
    memory_bytes: int
    sessions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Statistics:
    """The figures /metrics renders (:func:`tether.pool._metrics.render`), read from
    the database in one transaction (so right under any replica), plus this
    process's ``counters``. ``team_usage``: team -> (device-seconds, memory-GiB-
    seconds, leases) ever; ``team_month``: team -> (device-seconds, memory-GiB-
    seconds) this month; ``quotas`` by team id; ``queue_wait``: team -> (count,
    sum, cumulative bucket counts); ``queued``: team -> requests waiting.
    Not sent as JSON: /metrics is text."""

    nodes: tuple[NodeRow, ...]
    devices: tuple[DeviceRow, ...]
    allocation: Mapping[tuple[str, str], tuple[float, int]]
    teams: tuple[TeamHolding, ...]
    queued: Mapping[str, int]
    team_usage: Mapping[str, tuple[float, float, int]]
    team_month: Mapping[str, tuple[float, float]]
    quotas: Mapping[str, QuotaRow]
    queue_wait: Mapping[str, tuple[int, float, list[int]]]
    counters: Counters
