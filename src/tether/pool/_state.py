"""PoolState: the pool's policy as a pure state machine.

Theory of operation
-------------------
The pool service (store + HTTP API) owns all I/O; this module owns every
decision. The service turns what happens into events (``tether.pool._events``),
stamps them with its clock (``now``), feeds them to :meth:`PoolState.handle`,
persists the decisions that come back, and answers clients from them. Nothing
here reads a clock, touches a socket or a database, or draws random numbers:
the same events in the same order always give the same decisions, which is
what the unit tests assert.

Inventory (``_node_events``, over the node table of ``_roster``). Nodes
register with their devices and heartbeat. Each node has an admin state
(active, cordoned, drained) and a liveness (up, lost); only devices of nodes
that are up and active are in the placement index (``_placement.Inventory``),
so cordoned, drained and lost nodes never get new slices. A node silent for
``node_timeout_s`` is lost on the next event: every lease on it ends with
``node-lost`` at the node's last heartbeat; a heartbeat or registration brings
it back (admin state kept).

Requests (``_admission``). A :class:`SliceRequested` is, in order: refused ``unsatisfiable`` if
no registered device could ever hold it; refused ``quota`` if its team spent
its monthly device-hours; placed if the placement policy finds a device (or
whole devices on one node) with room and the team's concurrent limits allow
it; else queued (or refused, when the request said not to wait). A team's
later request never overtakes its own earlier one at the same or higher
priority: while the team has such a request queued, a new one queues behind it.

Groups (``_groups``). A :class:`GroupRequested` asks for ``min_count`` to
``max_count`` slices of one shape: refused at once when the registered devices
could never hold ``min_count`` or ``min_count`` alone is over quota; placed in
one step (one :class:`GroupPlaced` with every member's lease) when at least
``min_count`` fit now, the whole group counted against the team's quota; else
queued as one entry, which blocks its team's later requests like any other.

Queue. Whenever room appears (a lease ends, a node comes or comes back, a
quota is raised), queued requests are tried in the queue's fair order (higher
priority first; within a priority, teams take turns, the team using least share
first; FIFO within a team). A request that still does not fit stays and blocks
its own team's later requests; other teams' requests may go past it (backfill),
so one big request does not idle the pool. Requests waiting longer than their
timeout are refused ``timeout``.

Leases (``_lease_events``, over the table of ``_leases``) end on release, when
the acceptor reports their session finished (at the end it measured), on
expiry (no heartbeat for ``lease_timeout_s``; ended at their last heartbeat),
on node loss, on a device disappearing from the node's report, or on drain.
Usage is computed from leases (``_usage``).

Time. Events carry ``now``. Time may not go backwards by more than
``clock_skew_s``; an event that does is rejected with :class:`PoolInputError`
(and changes nothing); a smaller lag is read as the latest time seen. Every
bad input raises before anything changes.

Structure. One owner holds all the data: :class:`~tether.pool._tables.PoolTables`
(nodes, open leases, placement index, books, queue), each table referring to
no other. Each event type maps, in a table (``_TRANSITIONS``), to one
transition function that takes the tables, the event, its time and the
decisions to append to, and says whether it made room. Opening and ending a
lease, the two writes that touch several tables, are the tables' own methods;
no part calls back into another.

Restart. :meth:`PoolState.restore` rebuilds the state from the database's
nodes, open leases, queue and quotas. Everything restored gets one full timeout
from the restore time to check in again, so a pool restart does not end every
session; what does not check in ends at its last heartbeat as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tether.pool import _admission, _lease_events, _node_events
from tether.pool._events import (
    Decision,
    Event,
    GroupRequested,
    LeaseFinished,
    LeaseHeartbeat,
    LeaseReleased,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeRegistered,
    NodeUncordoned,
    QuotaSet,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._model import Lease, PoolConfig, Quota
from tether.pool._queue import QueueEntry
from tether.pool._quota import TeamUse
from tether.pool._roster import NodeRecord
from tether.pool._tables import PoolTables
from tether.pool._values import SHARE_SCALE, PoolConflictError, PoolInputError

__all__ = ["PoolState", "PoolStatistics"]

#: One event's transition: (tables, event, its time, decisions to append to) -> made room.
Transition = Callable[[PoolTables, Any, float, list[Decision]], bool]


def _tick(t: PoolTables, event: Tick, now: float, out: list[Decision]) -> bool:
    return False  # time passing is the expiry pass, which every event runs first


#: What each event does. Data, so the events the state takes are the keys.
_TRANSITIONS: dict[type[Event], Transition] = {
    NodeRegistered: _node_events.registered,
    NodeHeartbeat: _node_events.heartbeat,
    NodeCordoned: _node_events.cordoned,
    NodeDrained: _node_events.drained,
    NodeUncordoned: _node_events.uncordoned,
    SliceRequested: _admission.requested,
    GroupRequested: _admission.group_requested,
    RequestCancelled: _admission.cancelled,
    LeaseHeartbeat: _lease_events.heartbeat,
    LeaseReleased: _lease_events.released,
    LeaseFinished: _lease_events.finished,
    QuotaSet: _lease_events.quota_set,
    Tick: _tick,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStatistics:
    """Figures for metrics and the dashboard, at the state's latest time."""

    nodes: dict[str, int]  # status -> count
    devices: int  # registered
    capacity_share: float  # devices (in device units) that can take new slices
    allocated_share: float  # sum of open leases' shares
    open_leases: int
    queued: int


class PoolState:
    """The pool's inventory, leases, queue and quotas; see the module docstring.

    Drive it with :meth:`handle`; read it with the query methods, which never
    change anything. Not thread-safe: the service serialises events.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config if config is not None else PoolConfig()
        self._t = PoolTables(self.config)

    # ================================================================== driving

    def handle(self, event: Event) -> list[Decision]:
        """Apply one event and return the decisions it led to, in order.

        Time-driven changes due by ``event.now`` (lost nodes, expired leases,
        queue timeouts) come first, then the event's own, then placements of
        queued requests that the event made room for. Raises
        :class:`PoolInputError`, :class:`PoolNotFoundError` or
        :class:`PoolConflictError` for bad input, before changing anything.
        """
        transition = _TRANSITIONS.get(type(event))
        if transition is None:
            raise PoolInputError(f"not a pool event: {event!r}")
        t = self._t
        now = self._accept_time(event.now)
        self._validate(event)
        out: list[Decision] = []
        t.now = now
        if now >= t.books.month_end:
            t.books.roll_month(now)
        room = _lease_events.end_restored(t, now, out)
        room = _node_events.lose_silent(t, now, out) or room
        room = _lease_events.expire(t, now, out) or room
        room = _admission.time_out(t, now, out) or room
        room = transition(t, event, now, out) or room
        if room:
            _admission.serve(t, now, out)
        return out

    @property
    def now(self) -> float:
        """The latest time the state has seen."""
        return self._t.now

    # ================================================================== queries

    def node(self, node_id: str) -> NodeRecord:
        return self._t.nodes.get(node_id).record()

    def nodes(self) -> list[NodeRecord]:
        return self._t.nodes.records()

    def device_usage(self, node_id: str) -> dict[str, tuple[float, int]]:
        """Per device of the node: (allocated share in devices, allocated memory bytes)."""
        self._t.nodes.get(node_id)
        inv = self._t.inventory
        out = {}
        for dev_id in inv.device_ids(node_id):
            units, memory = inv.usage(node_id, dev_id)
            out[dev_id] = (units / SHARE_SCALE, memory)
        return out

    def lease(self, lease_id: str) -> Lease:
        return self._t.leases.get(lease_id)

    def leases(self, *, team: str | None = None, node: str | None = None) -> list[Lease]:
        """Open leases, by id, optionally of one team and/or on one node."""
        return [
            lease
            for lease in self._t.leases
            if (team is None or lease.team == team) and (node is None or lease.node == node)
        ]

    def queued(self, *, team: str | None = None) -> list[QueueEntry]:
        """Waiting requests in serve order (optionally one team's)."""
        return [
            e
            for e in self._t.queue.order(self._t.books.share)
            if team is None or e.request.team == team
        ]

    def queue_position(self, request_id: str) -> int:
        """A waiting request's 1-based place in line; :class:`PoolNotFoundError` if not queued."""
        return self._t.queue.position(request_id, self._t.books.share)

    def quota(self, team: str) -> Quota | None:
        return self._t.books.quota(team)

    def quotas(self) -> list[Quota]:
        return self._t.books.quotas()

    def team_use(self, team: str) -> TeamUse:
        """What ``team`` holds now and has used this month (open leases up to now)."""
        return self._t.books.use(team, self._t.now)

    def statistics(self) -> PoolStatistics:
        t = self._t
        return PoolStatistics(
            nodes=t.nodes.status_counts(),
            devices=t.inventory.device_count,
            capacity_share=t.inventory.capacity_units / SHARE_SCALE,
            allocated_share=t.inventory.allocated_units / SHARE_SCALE,
            open_leases=len(t.leases),
            queued=len(t.queue),
        )

    def next_deadline(self) -> float | None:
        """The next time something expires on its own: feed a :class:`Tick` then."""
        t = self._t
        times = [
            d
            for d in (
                t.nodes.next_deadline(),
                t.leases.next_deadline(t.now),
                t.queue.next_deadline(),
            )
            if d is not None
        ]
        return min(times) if times else None

    # ================================================================== restore

    @classmethod
    def restore(
        cls,
        config: PoolConfig | None = None,
        *,
        now: float,
        nodes: Iterable[NodeRecord] = (),
        leases: Iterable[Lease] = (),
        queue: Iterable[QueueEntry] = (),
        quotas: Iterable[Quota] = (),
    ) -> PoolState:
        """Rebuild the state from what the store persisted.

        ``leases``: the open leases, plus those closed in the current month
        (they count towards monthly quotas; older closed leases may be left
        out). ``queue``: waiting requests with their ``seq``. Every node and open
        lease gets a full timeout from ``now`` to check in (a pool restart must
        not end sessions that are alive). Open leases the restored inventory
        cannot hold (unknown or lost node, missing device, over-commit) are
        ended on the next :meth:`handle`: call ``handle(Tick(now=now))`` right
        after restoring, and persist its decisions.
        """
        state = cls(config)
        t = state._t
        t.now = float(now)
        t.books.roll_month(now)
        for rec in nodes:
            t.restore_node(rec, now)
        for lease in leases:
            t.restore_lease(lease, now)
        for entry in queue:
            _admission.restore(t, entry)
        for quota in quotas:
            t.books.set_quota(quota)
        return state

    # ================================================================== checks

    def _validate(self, event: Event) -> None:
        t = self._t
        if isinstance(event, NodeHeartbeat | NodeCordoned | NodeDrained | NodeUncordoned):
            t.nodes.require(event.node_id)
        elif isinstance(event, LeaseHeartbeat | LeaseReleased | LeaseFinished):
            t.leases.get(event.lease_id)
        elif isinstance(event, RequestCancelled):
            t.queue.get(event.request_id)
        elif isinstance(event, SliceRequested):
            self._check_new(event.request.id, event.request.queue_timeout_s)
        elif isinstance(event, GroupRequested):
            group = event.group
            self._check_new(group.id, group.shape.queue_timeout_s, *group.member_ids)

    def _check_new(self, request_id: str, timeout: float | None, *member_ids: str) -> None:
        for rid in (request_id, *member_ids):
            if self._t.in_use(rid):
                raise PoolConflictError(f"request id {rid!r} is already in use")
        if timeout is not None and timeout > self.config.max_queue_timeout_s:
            raise PoolInputError(
                f"queue timeout {timeout:g}s is over the pool's maximum of "
                f"{self.config.max_queue_timeout_s:g}s"
            )

    def _accept_time(self, t: float) -> float:
        latest = self._t.now
        if t < latest - self.config.clock_skew_s:
            raise PoolInputError(
                f"event time {t:.3f} is {latest - t:.3f}s before the latest time the pool has "
                f"seen ({latest:.3f}); clocks may lag by at most {self.config.clock_skew_s:g}s"
            )
        return max(t, latest)
