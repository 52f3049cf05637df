"""The nodes :class:`~tether.pool._state.PoolState` knows: a table, pure like the state.

:class:`NodeTable` keeps each node's spec, admin state (active, cordoned,
drained), liveness (up, lost), last heartbeat and the ids of the leases on it,
and the deadline by which each node that is up must beat again. It holds no
reference to any other part of the state: what an event does to a node, its
leases and the placement index is decided by the node transitions
(:mod:`tether.pool._node_events`), which are handed this table with the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether.pool._deadlines import Deadlines
from tether.pool._events import NodeStatus, NodeUpdated
from tether.pool._model import NodeSpec
from tether.pool._values import PoolNotFoundError

__all__ = ["AdminState", "Node", "NodeRecord", "NodeTable"]

#: What an admin set on a node; kept across loss and return.
AdminState = Literal["active", "cordoned", "drained"]

_STATUS: dict[AdminState, NodeStatus] = {
    "active": "ready",
    "cordoned": "cordoned",
    "drained": "drained",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """A node as the pool knows it (what the store keeps, what the API lists).

    ``status`` is what people see (``lost`` wins over the admin state);
    ``admin_state`` is what an admin set, kept while the node is lost.
    """

    node: NodeSpec
    admin_state: AdminState = "active"
    lost: bool = False
    last_heartbeat: float

    @property
    def status(self) -> NodeStatus:
        return "lost" if self.lost else _STATUS[self.admin_state]


@dataclass(slots=True, eq=False)
class Node:
    """One node's live entry (mutable; :class:`NodeRecord` is its frozen picture)."""

    spec: NodeSpec
    admin: AdminState
    lost: bool
    last_heartbeat: float
    leases: set[str]

    @property
    def eligible(self) -> bool:
        """Whether the node may take new slices: up and active."""
        return self.admin == "active" and not self.lost

    def record(self) -> NodeRecord:
        return NodeRecord(
            node=self.spec,
            admin_state=self.admin,
            lost=self.lost,
            last_heartbeat=self.last_heartbeat,
        )

    def updated(self) -> NodeUpdated:
        """The decision that tells the store this node's spec, status and last beat."""
        return NodeUpdated(
            node=self.spec,
            status=self.record().status,
            admin_state=self.admin,
            last_heartbeat=self.last_heartbeat,
        )


class NodeTable:
    """The nodes by id, and when each node that is up is lost unless it beats."""

    def __init__(self, node_timeout_s: float) -> None:
        self._timeout = node_timeout_s
        self._nodes: dict[str, Node] = {}
        self._deadlines = Deadlines()  # of nodes that are up

    def get(self, node_id: str) -> Node:
        """The node; :class:`PoolNotFoundError` if it never registered."""
        try:
            return self._nodes[node_id]
        except KeyError:
            raise PoolNotFoundError(f"node {node_id!r} is not registered") from None

    def find(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def require(self, node_id: str) -> None:
        """Check that an event may name ``node_id``: :class:`PoolNotFoundError` if not."""
        if node_id not in self._nodes:
            raise PoolNotFoundError(f"node {node_id!r} is not registered: register it first")

    def records(self) -> list[NodeRecord]:
        """Every node, by id."""
        return [self._nodes[k].record() for k in sorted(self._nodes)]

    def status_counts(self) -> dict[str, int]:
        """How many nodes are in each status (every status named, zero or not)."""
        counts: dict[str, int] = {"ready": 0, "cordoned": 0, "drained": 0, "lost": 0}
        for n in self._nodes.values():
            counts[n.record().status] += 1
        return counts

    def next_deadline(self) -> float | None:
        """When the next node that is up will be lost unless it beats first."""
        return self._deadlines.next()

    def add(self, node: Node) -> None:
        """Add a node (new, or restored as the store kept it); no deadline yet."""
        self._nodes[node.spec.id] = node

    def beat(self, node: Node, now: float) -> None:
        """The node is alive at ``now``: its next deadline is a full timeout away."""
        node.last_heartbeat = now
        self._deadlines.set(node.spec.id, now + self._timeout)

    def give_time(self, node: Node, now: float) -> None:
        """A restored node that is up gets a full timeout from ``now`` (or its last beat)."""
        self._deadlines.set(node.spec.id, max(node.last_heartbeat, now) + self._timeout)

    def pop_lost(self, now: float) -> Node | None:
        """A node whose deadline passed by ``now`` (no longer timed), or None."""
        node_id = self._deadlines.pop_due(now)
        return None if node_id is None else self._nodes[node_id]
