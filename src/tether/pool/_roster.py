"""The nodes :class:`~tether.pool._state.PoolState` knows, and the events about them.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
The roster keeps each node's spec, admin state (active, cordoned, drained),
liveness (up, lost), last heartbeat and the leases on it, and the deadline by
which each node that is up must beat again. It decides what registration,
heartbeats, cordon, drain, uncordon and silence do to a node, and keeps the
placement index (the state's :class:`~tether.pool._placement.Inventory`, shared)
told which nodes may take new slices: those up and active.

Ending a lease touches the state's leases and books too, so the roster ends
none itself: it names the lease, the reason and the end time to the state's
``end_lease``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from tether.pool._deadlines import Deadlines
from tether.pool._events import (
    Decision,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeHeartbeatRecorded,
    NodeLost,
    NodeRegistered,
    NodeStatus,
    NodeUncordoned,
    NodeUpdated,
)
from tether.pool._model import EndReason, Lease, NodeSpec, PoolConfig
from tether.pool._placement import Inventory
from tether.pool._values import PoolNotFoundError

__all__ = ["AdminState", "EndLease", "Node", "NodeRecord", "Roster"]

#: What an admin set on a node; kept across loss and return.
AdminState = Literal["active", "cordoned", "drained"]

#: The state's way to end a lease: (lease id, reason, end time, decisions to append to).
EndLease = Callable[[str, EndReason, float, list[Decision]], None]


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
        if self.lost:
            return "lost"
        return {"active": "ready", "cordoned": "cordoned", "drained": "drained"}[self.admin_state]  # type: ignore[return-value]


@dataclass(slots=True, eq=False)
class Node:
    """One node's live entry (mutable; :class:`NodeRecord` is its frozen picture)."""

    spec: NodeSpec
    admin: AdminState
    lost: bool
    last_heartbeat: float
    leases: set[str]

    def record(self) -> NodeRecord:
        return NodeRecord(
            node=self.spec,
            admin_state=self.admin,
            lost=self.lost,
            last_heartbeat=self.last_heartbeat,
        )


class Roster:
    """The nodes, by id; see the module docstring.

    ``inventory`` is the state's placement index, ``leases`` its open leases (read
    only here), ``end_lease`` how it ends one. Event methods raise nothing: the
    state checks events (:meth:`require`) before it changes anything.
    """

    def __init__(
        self,
        config: PoolConfig,
        inventory: Inventory,
        leases: Mapping[str, Lease],
        end_lease: EndLease,
    ) -> None:
        self._config = config
        self._inv = inventory
        self._leases = leases
        self._end_lease = end_lease
        self._nodes: dict[str, Node] = {}
        self._deadlines = Deadlines()  # of nodes that are up

    # ================================================================== queries

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

    # ================================================================== events

    def registered(self, event: NodeRegistered, now: float, out: list[Decision]) -> bool:
        spec = event.node
        node = self._nodes.get(spec.id)
        if node is None:
            node = Node(
                spec=spec,
                admin="active",
                lost=False,
                last_heartbeat=now,
                leases=set(),
            )
            self._nodes[spec.id] = node
        else:
            removed = set(self._inv.devices_removed_by(spec))
            for lease_id in sorted(node.leases):
                if removed.intersection(self._leases[lease_id].device_ids):
                    self._end_lease(lease_id, "device-lost", node.last_heartbeat, out)
        node.spec = spec
        node.lost = False
        self._beat(node, now)
        self._inv.set_node(spec)
        self._inv.set_eligible(spec.id, node.admin == "active")
        out.append(self._updated(node))
        return True

    def heartbeat(self, event: NodeHeartbeat, now: float, out: list[Decision]) -> bool:
        node = self._nodes[event.node_id]
        room = False
        changed = node.lost
        node.lost = False
        seen_before = node.last_heartbeat  # the last time its devices were all known alive
        self._beat(node, now)
        if event.device_ids is not None:
            seen = set(event.device_ids)
            missing = [d.id for d in node.spec.devices if d.id not in seen]
            if missing:
                for lease_id in sorted(node.leases):
                    if set(missing).intersection(self._leases[lease_id].device_ids):
                        self._end_lease(lease_id, "device-lost", seen_before, out)
                for dev_id in missing:
                    self._inv.remove_device(node.spec.id, dev_id)
                node.spec = replace(
                    node.spec, devices=tuple(d for d in node.spec.devices if d.id in seen)
                )
                changed = True
        if changed:
            room = True
            self._inv.set_eligible(node.spec.id, node.admin == "active")
            out.append(self._updated(node))
        else:
            out.append(NodeHeartbeatRecorded(node_id=node.spec.id, last_heartbeat=now))
        return room

    def cordoned(self, event: NodeCordoned, now: float, out: list[Decision]) -> bool:
        node = self._nodes[event.node_id]
        if node.admin == "active":
            node.admin = "cordoned"
        self._inv.set_eligible(node.spec.id, False)
        out.append(self._updated(node))
        return False

    def drained(self, event: NodeDrained, now: float, out: list[Decision]) -> bool:
        node = self._nodes[event.node_id]
        node.admin = "drained"
        self._inv.set_eligible(node.spec.id, False)
        ended = sorted(node.leases)
        for lease_id in ended:
            self._end_lease(lease_id, "drained", now, out)
        out.append(self._updated(node))
        return bool(ended)  # the teams' quotas have room again

    def uncordoned(self, event: NodeUncordoned, now: float, out: list[Decision]) -> bool:
        node = self._nodes[event.node_id]
        node.admin = "active"
        self._inv.set_eligible(node.spec.id, not node.lost)
        out.append(self._updated(node))
        return True

    def expire(self, now: float, out: list[Decision]) -> bool:
        """Lose every node silent past its deadline, ending its leases at its last beat.

        Returns whether that made room (a lease ended).
        """
        room = False
        while (node_id := self._deadlines.pop_due(now)) is not None:
            node = self._nodes[node_id]
            node.lost = True
            self._inv.set_eligible(node_id, False)
            out.append(NodeLost(node_id=node_id, last_heartbeat=node.last_heartbeat, now=now))
            for lease_id in sorted(node.leases):
                lease = self._leases[lease_id]
                self._end_lease(lease_id, "node-lost", max(node.last_heartbeat, lease.start), out)
                room = True
        return room

    def restore(self, rec: NodeRecord, now: float) -> None:
        """Add a node as the store kept it; one that is up gets a full timeout from ``now``."""
        node = Node(
            spec=rec.node,
            admin=rec.admin_state,
            lost=rec.lost,
            last_heartbeat=rec.last_heartbeat,
            leases=set(),
        )
        self._nodes[rec.node.id] = node
        self._inv.set_node(rec.node)
        self._inv.set_eligible(rec.node.id, node.admin == "active" and not node.lost)
        if not node.lost:
            deadline = max(rec.last_heartbeat, now) + self._config.node_timeout_s
            self._deadlines.set(rec.node.id, deadline)

    # ================================================================== mechanics

    def _beat(self, node: Node, now: float) -> None:
        node.last_heartbeat = now
        self._deadlines.set(node.spec.id, now + self._config.node_timeout_s)

    @staticmethod
    def _updated(node: Node) -> NodeUpdated:
        return NodeUpdated(
            node=node.spec,
            status=node.record().status,
            admin_state=node.admin,
            last_heartbeat=node.last_heartbeat,
        )
