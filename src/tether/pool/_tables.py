"""Everything :class:`~tether.pool._state.PoolState` holds, in one owner.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
:class:`PoolTables` is the state's data: the node table, the open leases, the
placement index, the teams' books, the wait queue, and the queue's sequence
counter. Each table keeps only its own data and refers to no other; the
transition functions (:mod:`tether.pool._node_events`,
:mod:`tether.pool._lease_events`, :mod:`tether.pool._admission`) are handed
this one object and change the tables through it.

Two writes touch four tables at once and live here, so that no part keeps a
callback into another: opening a lease (room in the placement index, the
lease, its node's lease set, its team's books, its deadline) and ending one
(all of that given back, its time counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tether.pool._books import TeamBooks
from tether.pool._events import Decision, LeaseEnded, Placed
from tether.pool._leases import LeaseTable
from tether.pool._model import EndReason, Lease, PoolConfig
from tether.pool._placement import Inventory, Placement
from tether.pool._queue import RequestQueue
from tether.pool._request import SliceRequest
from tether.pool._roster import Node, NodeRecord, NodeTable
from tether.pool._values import SHARE_SCALE, PoolInputError, share_units

__all__ = ["PoolTables"]


@dataclass(slots=True, eq=False)
class PoolTables:
    """The state's tables (see the module docstring); ``now`` is the latest time seen."""

    config: PoolConfig
    now: float = 0.0
    seq: int = 0  # the next queue entry's tie-break
    inventory: Inventory = field(default_factory=Inventory)
    books: TeamBooks = field(default_factory=TeamBooks)
    queue: RequestQueue = field(default_factory=RequestQueue)
    nodes: NodeTable = field(init=False)
    leases: LeaseTable = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = NodeTable(self.config.node_timeout_s)
        self.leases = LeaseTable(self.config.lease_timeout_s)

    def set_eligible(self, node: Node) -> None:
        """Tell the placement index whether ``node`` may take new slices now."""
        self.inventory.set_eligible(node.spec.id, node.eligible)

    def in_use(self, request_id: str) -> bool:
        """Whether an open lease or a waiting request has this id."""
        return request_id in self.leases or request_id in self.queue

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    # ================================================================== leases

    def open_lease(
        self, req: SliceRequest, placement: Placement, now: float, out: list[Decision]
    ) -> None:
        """Give ``req`` the ``placement`` (which must fit) as a lease from ``now``."""
        self.inventory.allocate(placement)
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
        self.leases.add(lease, now)
        node = self.nodes.get(placement.node_id)
        node.leases.add(lease.id)
        self.books.count_open(lease, +1)
        out.append(Placed(lease=lease, address=node.spec.address))

    def end_lease(
        self, lease_id: str, reason: EndReason, end: float, now: float, out: list[Decision]
    ) -> None:
        """End an open lease at ``end`` (kept within its start and ``now``)."""
        lease = self.leases.pop(lease_id)
        end = min(max(end, lease.start), now)
        node = self.nodes.find(lease.node)
        if node is not None and lease_id in node.leases:
            node.leases.discard(lease_id)
            self.inventory.free(
                lease.node, lease.device_ids, share_units(lease.fraction), lease.memory_bytes
            )
        self.books.count_open(lease, -1)
        self.books.count_closed(lease, end)
        out.append(LeaseEnded(lease=replace(lease, end=end, end_reason=reason)))

    # ================================================================== restore

    def restore_node(self, rec: NodeRecord, now: float) -> None:
        """Add a node as the store kept it; one that is up gets a full timeout from ``now``."""
        node = Node(
            spec=rec.node,
            admin=rec.admin_state,
            lost=rec.lost,
            last_heartbeat=rec.last_heartbeat,
            leases=set(),
        )
        self.nodes.add(node)
        self.inventory.set_node(rec.node)
        self.set_eligible(node)
        if not node.lost:
            self.nodes.give_time(node, now)

    def restore_lease(self, lease: Lease, now: float) -> None:
        """Add a lease as the store kept it; an open one gets a full timeout from ``now``.

        A closed one only counts in the month's books. An open one the restored
        inventory cannot hold is ended on the next event.
        """
        if lease.end is not None:
            self.books.count_closed(lease, lease.end)
            return
        if lease.id in self.leases:
            raise PoolInputError(f"restore: lease {lease.id!r} appears twice")
        owner = self.nodes.find(lease.node)
        placement = Placement(
            node_id=lease.node,
            device_ids=lease.device_ids,
            share_units=share_units(lease.fraction),
            memory_bytes=lease.memory_bytes,
        )
        try:
            if owner is None or owner.lost:
                raise PoolInputError("node unknown or lost")
            self.inventory.allocate(placement)
        except PoolInputError:
            reason: EndReason = "node-lost" if owner is None or owner.lost else "device-lost"
            self.leases.add_pending(lease, reason)
            self.books.count_open(lease, +1)
            return
        owner.leases.add(lease.id)
        self.books.count_open(lease, +1)
        self.leases.add(lease, max(lease.last_heartbeat, now))
