"""Requests waiting for room: priority first, fair between teams, FIFO within a team.

The serve order (:meth:`RequestQueue.order`) is:

1. higher ``priority`` first;
2. within a priority, teams take turns (round-robin: every team's first
   request, then every team's second, ...), and within each turn the team that
   holds the least share now goes first (ties: the team whose oldest request
   came first) -- so a team that holds much waits behind one that holds little;
3. within a team, first come first served.

:meth:`RequestQueue.position` gives a request's 1-based place in that order in
O(teams), without building it. Deadlines (per-request queue timeouts) are kept
in a heap, so :meth:`RequestQueue.pop_expired` costs O(log n) per expiry.
Pure data structure: time is passed in.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tether.pool._group_request import GroupRequest
from tether.pool._model import PlacementPolicy
from tether.pool._request import SliceRequest
from tether.pool._values import PoolConflictError, PoolNotFoundError

__all__ = ["QueueEntry", "RequestQueue"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEntry:
    """One waiting request: when it came (``enqueued_at``, ``seq`` for ties),
    when it gives up (``deadline``), and the placement policy it asked for.

    A waiting group (``group`` set) is one entry: ``request`` is its shape,
    whose id is the group's id (:mod:`tether.pool._groups`)."""

    request: SliceRequest
    enqueued_at: float
    deadline: float
    seq: int
    policy: PlacementPolicy | None = None
    group: GroupRequest | None = None

    @property
    def id(self) -> str:
        return self.request.id


class RequestQueue:
    """The waiting requests of the pool (see the module docstring for the order)."""

    def __init__(self) -> None:
        # priority -> team -> entries in arrival (seq) order
        self._levels: dict[int, dict[str, list[QueueEntry]]] = {}
        self._level_size: dict[int, int] = {}
        self._by_id: dict[str, QueueEntry] = {}
        self._deadlines: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def __iter__(self) -> Iterator[QueueEntry]:
        """Entries in arrival order."""
        return iter(sorted(self._by_id.values(), key=lambda e: e.seq))

    def get(self, request_id: str) -> QueueEntry:
        try:
            return self._by_id[request_id]
        except KeyError:
            raise PoolNotFoundError(f"no queued request {request_id!r}") from None

    def push(self, entry: QueueEntry) -> None:
        """Add a request; :class:`PoolConflictError` if its id is already queued."""
        if entry.id in self._by_id:
            raise PoolConflictError(f"request {entry.id!r} is already queued")
        req = entry.request
        teams = self._levels.setdefault(req.priority, {})
        entries = teams.setdefault(req.team, [])
        if entries and entries[-1].seq > entry.seq:
            bisect.insort(entries, entry, key=lambda e: e.seq)
        else:
            entries.append(entry)
        self._level_size[req.priority] = self._level_size.get(req.priority, 0) + 1
        self._by_id[entry.id] = entry
        heapq.heappush(self._deadlines, (entry.deadline, entry.seq, entry.id))

    def remove(self, request_id: str) -> QueueEntry:
        """Take a request out (placed, cancelled, timed out) and return it."""
        entry = self.get(request_id)
        req = entry.request
        teams = self._levels[req.priority]
        entries = teams[req.team]
        entries.remove(entry)
        if not entries:
            del teams[req.team]
            if not teams:
                del self._levels[req.priority]
        self._level_size[req.priority] -= 1
        if not self._level_size[req.priority]:
            del self._level_size[req.priority]
        del self._by_id[request_id]
        return entry

    def team_waiting(self, team: str, priority: int) -> bool:
        """Whether ``team`` has a request queued at ``priority`` or higher."""
        return any(team in teams for p, teams in self._levels.items() if p >= priority)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a queued request, or None."""
        while self._deadlines and self._deadlines[0][2] not in self._by_id:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def pop_expired(self, now: float) -> list[QueueEntry]:
        """Remove and return the requests whose deadline is at or before ``now``, earliest first."""
        out: list[QueueEntry] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, seq, request_id = heapq.heappop(self._deadlines)
            entry = self._by_id.get(request_id)
            if entry is not None and entry.seq == seq:
                out.append(self.remove(request_id))
        return out

    def _team_order(
        self, teams: Mapping[str, list[QueueEntry]], team_share: Mapping[str, int]
    ) -> list[str]:
        return sorted(teams, key=lambda t: (team_share.get(t, 0), teams[t][0].seq))

    def order(self, team_share: Mapping[str, int]) -> list[QueueEntry]:
        """All entries in serve order; ``team_share`` is each team's current share (any unit)."""
        out: list[QueueEntry] = []
        for priority in sorted(self._levels, reverse=True):
            teams = self._levels[priority]
            names = self._team_order(teams, team_share)
            longest = max(len(v) for v in teams.values())
            for r in range(longest):
                for name in names:
                    entries = teams[name]
                    if r < len(entries):
                        out.append(entries[r])
        return out

    def position(self, request_id: str, team_share: Mapping[str, int]) -> int:
        """The request's 1-based place in :meth:`order`, in O(priorities + teams)."""
        entry = self.get(request_id)
        req = entry.request
        ahead = sum(n for p, n in self._level_size.items() if p > req.priority)
        teams = self._levels[req.priority]
        mine = teams[req.team]
        r = bisect.bisect_left(mine, entry.seq, key=lambda e: e.seq)
        before = True
        for name in self._team_order(teams, team_share):
            if name == req.team:
                before = False
                continue
            n = len(teams[name])
            ahead += min(n, r + 1) if before else min(n, r)
        return ahead + r + 1
