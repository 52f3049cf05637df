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

Inventory (``_roster``). Nodes register with their devices and heartbeat. Each node has an
admin state (active, cordoned, drained) and a liveness (up, lost); only
devices of nodes that are up and active are in the placement index
(``_placement.Inventory``), so cordoned, drained and lost nodes never get new
slices. A node silent for ``node_timeout_s`` is lost on the next event: every
lease on it ends with ``node-lost`` at the node's last heartbeat; a heartbeat
or registration brings it back (admin state kept).

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

Leases (``_leases``) end on release, when the acceptor reports their session
finished (at the end it measured), on expiry (no heartbeat for ``lease_timeout_s``; ended
at their last heartbeat), on node loss, on a device disappearing from the
node's report, or on drain. Usage is computed from leases (``_usage``).

Time. Events carry ``now``. Time may not go backwards by more than
``clock_skew_s``; an event that does is rejected with :class:`PoolInputError`
(and changes nothing); a smaller lag is read as the latest time seen. Every
bad input raises before anything changes.

Restart. :meth:`PoolState.restore` rebuilds the state from the database's
nodes, open leases, queue and quotas. Everything restored gets one full timeout
from the restore time to check in again, so a pool restart does not end every
session; what does not check in ends at its last heartbeat as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tether.pool._admission import Admission
from tether.pool._books import TeamBooks
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
    QuotaUpdated,
    RequestCancelled,
    SliceRequested,
    Tick,
)
from tether.pool._leases import OpenLeases
from tether.pool._model import EndReason, Lease, PoolConfig, Quota
from tether.pool._placement import Inventory
from tether.pool._queue import QueueEntry, RequestQueue
from tether.pool._quota import TeamUse
from tether.pool._roster import NodeRecord, Roster
from tether.pool._values import SHARE_SCALE, PoolConflictError, PoolInputError

__all__ = ["PoolState", "PoolStatistics"]

_EVENT_TYPES = (
    NodeRegistered,
    NodeHeartbeat,
    NodeCordoned,
    NodeDrained,
    NodeUncordoned,
    SliceRequested,
    RequestCancelled,
    LeaseHeartbeat,
    LeaseReleased,
    LeaseFinished,
    QuotaSet,
    Tick,
    GroupRequested,
)


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
        self._now = 0.0
        self._inv = Inventory()
        self._books = TeamBooks()
        open_leases: dict[str, Lease] = {}
        self._roster = Roster(self.config, self._inv, open_leases, self._end_lease)
        self._leases = OpenLeases(self.config, self._inv, self._books, self._roster, open_leases)
        self._queue = RequestQueue()
        self._admission = Admission(
            self.config, self._inv, self._books, self._queue, self._leases.open
        )

    # ================================================================== driving

    def handle(self, event: Event) -> list[Decision]:
        """Apply one event and return the decisions it led to, in order.

        Time-driven changes due by ``event.now`` (lost nodes, expired leases,
        queue timeouts) come first, then the event's own, then placements of
        queued requests that the event made room for. Raises
        :class:`PoolInputError`, :class:`PoolNotFoundError` or
        :class:`PoolConflictError` for bad input, before changing anything.
        """
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is None or not isinstance(event, _EVENT_TYPES):
            raise PoolInputError(f"not a pool event: {event!r}")
        now = self._accept_time(event.now)
        self._validate(event)
        out: list[Decision] = []
        self._now = now
        if now >= self._books.month_end:
            self._books.roll_month(now)
        room = self._expire(now, out)
        room = handler(event, now, out) or room
        if room:
            self._admission.serve(now, out)
        return out

    @property
    def now(self) -> float:
        """The latest time the state has seen."""
        return self._now

    # ================================================================== queries

    def node(self, node_id: str) -> NodeRecord:
        return self._roster.get(node_id).record()

    def nodes(self) -> list[NodeRecord]:
        return self._roster.records()

    def device_usage(self, node_id: str) -> dict[str, tuple[float, int]]:
        """Per device of the node: (allocated share in devices, allocated memory bytes)."""
        self._roster.get(node_id)
        out = {}
        for dev_id in self._inv.device_ids(node_id):
            units, memory = self._inv.usage(node_id, dev_id)
            out[dev_id] = (units / SHARE_SCALE, memory)
        return out

    def lease(self, lease_id: str) -> Lease:
        return self._leases.get(lease_id)

    def leases(self, *, team: str | None = None, node: str | None = None) -> list[Lease]:
        """Open leases, by id, optionally of one team and/or on one node."""
        return [
            lease
            for lease in self._leases
            if (team is None or lease.team == team) and (node is None or lease.node == node)
        ]

    def queued(self, *, team: str | None = None) -> list[QueueEntry]:
        """Waiting requests in serve order (optionally one team's)."""
        return [
            e
            for e in self._queue.order(self._books.share)
            if team is None or e.request.team == team
        ]

    def queue_position(self, request_id: str) -> int:
        """A waiting request's 1-based place in line; :class:`PoolNotFoundError` if not queued."""
        return self._queue.position(request_id, self._books.share)

    def quota(self, team: str) -> Quota | None:
        return self._books.quota(team)

    def quotas(self) -> list[Quota]:
        return self._books.quotas()

    def team_use(self, team: str) -> TeamUse:
        """What ``team`` holds now and has used this month (open leases up to now)."""
        return self._books.use(team, self._now)

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            nodes=self._roster.status_counts(),
            devices=self._inv.device_count,
            capacity_share=self._inv.capacity_units / SHARE_SCALE,
            allocated_share=self._inv.allocated_units / SHARE_SCALE,
            open_leases=len(self._leases),
            queued=len(self._queue),
        )

    def next_deadline(self) -> float | None:
        """The next time something expires on its own: feed a :class:`Tick` then."""
        times = [
            t
            for t in (
                self._roster.next_deadline(),
                self._leases.next_deadline(self._now),
                self._queue.next_deadline(),
            )
            if t is not None
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
        state._now = float(now)
        state._books.roll_month(now)
        for rec in nodes:
            state._roster.restore(rec, now)
        for lease in leases:
            state._leases.restore(lease, now)
        for entry in queue:
            state._admission.restore(entry)
        for quota in quotas:
            state._books.set_quota(quota)
        return state

    # ================================================================== event handlers

    def _validate(self, event: Event) -> None:
        if isinstance(event, NodeHeartbeat | NodeCordoned | NodeDrained | NodeUncordoned):
            self._roster.require(event.node_id)
        elif isinstance(event, LeaseHeartbeat | LeaseReleased | LeaseFinished):
            self.lease(event.lease_id)
        elif isinstance(event, RequestCancelled):
            self._queue.get(event.request_id)
        elif isinstance(event, SliceRequested):
            req = event.request
            if req.id in self._leases or req.id in self._queue:
                raise PoolConflictError(f"request id {req.id!r} is already in use")
            timeout = req.queue_timeout_s
            if timeout is not None and timeout > self.config.max_queue_timeout_s:
                raise PoolInputError(
                    f"queue timeout {timeout:g}s is over the pool's maximum of "
                    f"{self.config.max_queue_timeout_s:g}s"
                )
        elif isinstance(event, GroupRequested):
            group = event.group
            for rid in (group.id, *group.member_ids):
                if rid in self._leases or rid in self._queue:
                    raise PoolConflictError(f"request id {rid!r} is already in use")
            timeout = group.shape.queue_timeout_s
            if timeout is not None and timeout > self.config.max_queue_timeout_s:
                raise PoolInputError(
                    f"queue timeout {timeout:g}s is over the pool's maximum of "
                    f"{self.config.max_queue_timeout_s:g}s"
                )

    # The node events are the roster's.

    def _on_NodeRegistered(self, event: NodeRegistered, now: float, out: list[Decision]) -> bool:
        return self._roster.registered(event, now, out)

    def _on_NodeHeartbeat(self, event: NodeHeartbeat, now: float, out: list[Decision]) -> bool:
        return self._roster.heartbeat(event, now, out)

    def _on_NodeCordoned(self, event: NodeCordoned, now: float, out: list[Decision]) -> bool:
        return self._roster.cordoned(event, now, out)

    def _on_NodeDrained(self, event: NodeDrained, now: float, out: list[Decision]) -> bool:
        return self._roster.drained(event, now, out)

    def _on_NodeUncordoned(self, event: NodeUncordoned, now: float, out: list[Decision]) -> bool:
        return self._roster.uncordoned(event, now, out)

    # Requests are admission's.

    def _on_SliceRequested(self, event: SliceRequested, now: float, out: list[Decision]) -> bool:
        return self._admission.requested(event, now, out)

    def _on_GroupRequested(self, event: GroupRequested, now: float, out: list[Decision]) -> bool:
        return self._admission.group_requested(event, now, out)

    def _on_RequestCancelled(
        self, event: RequestCancelled, now: float, out: list[Decision]
    ) -> bool:
        return self._admission.cancelled(event, now, out)

    # Lease events are the open leases'.

    def _on_LeaseHeartbeat(self, event: LeaseHeartbeat, now: float, out: list[Decision]) -> bool:
        return self._leases.heartbeat(event, now, out)

    def _on_LeaseReleased(self, event: LeaseReleased, now: float, out: list[Decision]) -> bool:
        return self._leases.released(event, now, out)

    def _on_LeaseFinished(self, event: LeaseFinished, now: float, out: list[Decision]) -> bool:
        return self._leases.finished(event, now, out)

    def _on_QuotaSet(self, event: QuotaSet, now: float, out: list[Decision]) -> bool:
        self._books.set_quota(event.quota)
        out.append(QuotaUpdated(quota=event.quota))
        return True

    def _on_Tick(self, event: Event, now: float, out: list[Decision]) -> bool:
        return False

    # ================================================================== mechanics

    def _accept_time(self, t: float) -> float:
        if t < self._now - self.config.clock_skew_s:
            raise PoolInputError(
                f"event time {t:.3f} is {self._now - t:.3f}s before the latest time the pool has "
                f"seen ({self._now:.3f}); clocks may lag by at most {self.config.clock_skew_s:g}s"
            )
        return max(t, self._now)

    def _expire(self, now: float, out: list[Decision]) -> bool:
        room = self._leases.end_pending(now, out)
        room = self._roster.expire(now, out) or room
        room = self._leases.expire(now, out) or room
        room = self._admission.expire(now, out) or room
        return room

    def _end_lease(self, lease_id: str, reason: EndReason, end: float, out: list[Decision]) -> None:
        self._leases.end(lease_id, reason, end, self._now, out)
