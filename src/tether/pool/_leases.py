"""The open leases of :class:`~tether.pool._state.PoolState`, and how they end.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
:class:`OpenLeases` keeps each open lease, the deadline by which it must beat
again, and the restored leases the inventory could not hold (ended on the next
event). Opening a lease takes its room in the placement index (the state's
:class:`~tether.pool._placement.Inventory`, shared), adds it to its node and to
its team's books; ending one gives all of that back and counts its time.

Leases end on release, when their session ends at the acceptor (at the time
it measured, however late the report), on expiry (no heartbeat for ``lease_timeout_s``, ended at
their last heartbeat), and when the roster says so (node lost, device gone,
drain), through the state's ``end_lease``, which comes here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from tether.pool._books import TeamBooks
from tether.pool._deadlines import Deadlines
from tether.pool._events import (
    Decision,
    LeaseEnded,
    LeaseFinished,
    LeaseHeartbeat,
    LeaseReleased,
    LeaseRenewed,
    Placed,
)
from tether.pool._model import EndReason, Lease, PoolConfig
from tether.pool._placement import Inventory, Placement
from tether.pool._request import SliceRequest
from tether.pool._roster import Roster
from tether.pool._values import SHARE_SCALE, PoolInputError, PoolNotFoundError, share_units

__all__ = ["OpenLeases"]


class OpenLeases:
    """The open leases, by id; see the module docstring.

    ``leases`` is the (empty) dict to keep them in: the roster reads the same
    one. ``inventory``, ``books`` and ``roster`` are the state's (shared, kept in
    step). Event methods raise nothing: the state checks events (:meth:`get`)
    before it changes anything.
    """

    def __init__(
        self,
        config: PoolConfig,
        inventory: Inventory,
        books: TeamBooks,
        roster: Roster,
        leases: dict[str, Lease],
    ) -> None:
        self._config = config
        self._inv = inventory
        self._books = books
        self._roster = roster
        self._leases = leases
        self._deadlines = Deadlines()
        self._pending_end: list[tuple[str, EndReason]] = []

    # ================================================================== queries

    def get(self, lease_id: str) -> Lease:
        """The lease; :class:`PoolNotFoundError` if it is not open."""
        try:
            return self._leases[lease_id]
        except KeyError:
            raise PoolNotFoundError(
                f"no open lease {lease_id!r} (it ended, or never existed)"
            ) from None

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        """The open leases, by id."""
        return iter([lease for _, lease in sorted(self._leases.items())])

    def next_deadline(self, now: float) -> float | None:
        """When the next lease expires unless it beats first (``now`` if one is due to end)."""
        due = self._deadlines.next()
        if self._pending_end:
            return now if due is None else min(due, now)
        return due

    # ================================================================== events

    def open(
        self, req: SliceRequest, placement: Placement, now: float, out: list[Decision]
    ) -> None:
        """Give ``req`` the ``placement`` (which must fit) as a lease from ``now``."""
        self._inv.allocate(placement)
        lease = Lease(
            id=req.id,
            node=placement.node_id,
            device_ids=placement.device_ids,
            fraction=placement.share_units / SHARE_SCALE,
            memory_bytes=placement.memory_bytes,
            team=req.team,
            user=req.user,
            start=now,
            last_heartbeat=now,
        )
        self._leases[lease.id] = lease
        node = self._roster.get(placement.node_id)
        node.leases.add(lease.id)
        self._books.count_open(lease, +1)
        self._deadlines.set(lease.id, now + self._config.lease_timeout_s)
        out.append(Placed(lease=lease, address=node.spec.address))

    def heartbeat(self, event: LeaseHeartbeat, now: float, out: list[Decision]) -> bool:
        lease = self._leases.get(event.lease_id)
        if lease is None:  # ended by the expiry pass of this very event
            return False
        self._leases[lease.id] = replace(lease, last_heartbeat=now)
        self._deadlines.set(lease.id, now + self._config.lease_timeout_s)
        out.append(LeaseRenewed(lease_id=lease.id, last_heartbeat=now))
        return False

    def released(self, event: LeaseReleased, now: float, out: list[Decision]) -> bool:
        if event.lease_id not in self._leases:
            return False
        self.end(event.lease_id, "released", now, now, out)
        return True

    def finished(self, event: LeaseFinished, now: float, out: list[Decision]) -> bool:
        """The session ended at its acceptor: the lease ends at that measured time."""
        if event.lease_id not in self._leases:
            return False
        self.end(event.lease_id, "finished", event.end, now, out)
        return True

    def end(
        self, lease_id: str, reason: EndReason, end: float, now: float, out: list[Decision]
    ) -> None:
        """End an open lease at ``end`` (kept within its start and ``now``)."""
        lease = self._leases.pop(lease_id)
        end = min(max(end, lease.start), now)
        self._deadlines.discard(lease_id)
        node = self._roster.find(lease.node)
        if node is not None and lease_id in node.leases:
            node.leases.discard(lease_id)
            self._inv.free(
                lease.node, lease.device_ids, share_units(lease.fraction), lease.memory_bytes
            )
        self._books.count_open(lease, -1)
        self._books.count_closed(lease, end)
        out.append(LeaseEnded(lease=replace(lease, end=end, end_reason=reason)))

    def end_pending(self, now: float, out: list[Decision]) -> bool:
        """End the restored leases the inventory could not hold, at their last beat."""
        room = False
        while self._pending_end:
            lease_id, reason = self._pending_end.pop(0)
            if lease_id in self._leases:
                lease = self._leases[lease_id]
                self.end(lease_id, reason, lease.last_heartbeat, now, out)
                room = True
        return room

    def expire(self, now: float, out: list[Decision]) -> bool:
        """End every lease silent past its deadline, at its last beat."""
        room = False
        while (expired := self._deadlines.pop_due(now)) is not None:
            lease = self._leases[expired]
            self.end(expired, "expired", lease.last_heartbeat, now, out)
            room = True
        return room

    def restore(self, lease: Lease, now: float) -> None:
        """Add a lease as the store kept it; an open one gets a full timeout from ``now``.

        A closed one only counts in the month's books. An open one the restored
        inventory cannot hold is ended on the next event (:meth:`end_pending`).
        """
        if lease.end is not None:
            self._books.count_closed(lease, lease.end)
            return
        if lease.id in self._leases:
            raise PoolInputError(f"restore: lease {lease.id!r} appears twice")
        self._leases[lease.id] = lease
        owner = self._roster.find(lease.node)
        placement = Placement(
            node_id=lease.node,
            device_ids=lease.device_ids,
            share_units=share_units(lease.fraction),
            memory_bytes=lease.memory_bytes,
        )
        try:
            if owner is None or owner.lost:
                raise PoolInputError("node unknown or lost")
            self._inv.allocate(placement)
        except PoolInputError:
            reason: EndReason = "node-lost" if owner is None or owner.lost else "device-lost"
            self._pending_end.append((lease.id, reason))
            self._books.count_open(lease, +1)
            return
        owner.leases.add(lease.id)
        self._books.count_open(lease, +1)
        self._deadlines.set(lease.id, max(lease.last_heartbeat, now) + self._config.lease_timeout_s)
