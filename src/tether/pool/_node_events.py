"""What node events do to :class:`~tether.pool._tables.PoolTables`: transition functions.

Part of the state machine (see ``_state``'s theory of operation), pure like it.
Each function takes the state's tables, one event, its time and the list of
decisions to append to, and returns whether it made room (so the state serves
the queue). None raises: the state checks events before it changes anything.

Registration and heartbeats keep a node up (its deadline a full
``node_timeout_s`` away) and bring a lost one back (admin state kept); a
device missing from a registration or a heartbeat ends the leases on it with
``device-lost`` at the node's last beat before. Cordon stops new slices,
drain also ends the node's leases, uncordon reopens it. A node silent past its
deadline is lost: its leases end with ``node-lost`` at its last heartbeat.
Only nodes up and active are eligible in the placement index.
"""

from __future__ import annotations

from dataclasses import replace

from tether.pool._events import (
    Decision,
    NodeCordoned,
    NodeDrained,
    NodeHeartbeat,
    NodeHeartbeatRecorded,
    NodeLost,
    NodeRegistered,
    NodeUncordoned,
)
from tether.pool._roster import Node
from tether.pool._tables import PoolTables

__all__ = ["cordoned", "drained", "heartbeat", "lose_silent", "registered", "uncordoned"]


def registered(t: PoolTables, event: NodeRegistered, now: float, out: list[Decision]) -> bool:
    spec = event.node
    node = t.nodes.find(spec.id)
    if node is None:
        node = Node(spec=spec, admin="active", lost=False, last_heartbeat=now, leases=set())
        t.nodes.add(node)
    else:
        removed = set(t.inventory.devices_removed_by(spec))
        _end_on_devices(t, node, removed, node.last_heartbeat, now, out)
    node.spec = spec
    node.lost = False
    t.nodes.beat(node, now)
    t.inventory.set_node(spec)
    t.set_eligible(node)
    out.append(node.updated())
    return True


def heartbeat(t: PoolTables, event: NodeHeartbeat, now: float, out: list[Decision]) -> bool:
    node = t.nodes.get(event.node_id)
    changed = node.lost
    node.lost = False
    seen_before = node.last_heartbeat  # the last time its devices were all known alive
    t.nodes.beat(node, now)
    if event.device_ids is not None:
        seen = set(event.device_ids)
        missing = [d.id for d in node.spec.devices if d.id not in seen]
        if missing:
            _end_on_devices(t, node, set(missing), seen_before, now, out)
            for dev_id in missing:
                t.inventory.remove_device(node.spec.id, dev_id)
            node.spec = replace(
                node.spec, devices=tuple(d for d in node.spec.devices if d.id in seen)
            )
            changed = True
    if not changed:
        out.append(NodeHeartbeatRecorded(node_id=node.spec.id, last_heartbeat=now))
        return False
    t.set_eligible(node)
    out.append(node.updated())
    return True


def cordoned(t: PoolTables, event: NodeCordoned, now: float, out: list[Decision]) -> bool:
    node = t.nodes.get(event.node_id)
    if node.admin == "active":
        node.admin = "cordoned"
    t.set_eligible(node)
    out.append(node.updated())
    return False


def drained(t: PoolTables, event: NodeDrained, now: float, out: list[Decision]) -> bool:
    node = t.nodes.get(event.node_id)
    node.admin = "drained"
    t.set_eligible(node)
    ended = sorted(node.leases)
    for lease_id in ended:
        t.end_lease(lease_id, "drained", now, now, out)
    out.append(node.updated())
    return bool(ended)  # the teams' quotas have room again


def uncordoned(t: PoolTables, event: NodeUncordoned, now: float, out: list[Decision]) -> bool:
    node = t.nodes.get(event.node_id)
    node.admin = "active"
    t.set_eligible(node)
    out.append(node.updated())
    return True


def lose_silent(t: PoolTables, now: float, out: list[Decision]) -> bool:
    """Lose every node silent past its deadline, ending its leases at its last beat.

    Returns whether that made room (a lease ended).
    """
    room = False
    while (node := t.nodes.pop_lost(now)) is not None:
        node.lost = True
        t.set_eligible(node)
        out.append(NodeLost(node_id=node.spec.id, last_heartbeat=node.last_heartbeat, now=now))
        for lease_id in sorted(node.leases):
            lease = t.leases.get(lease_id)
            t.end_lease(lease_id, "node-lost", max(node.last_heartbeat, lease.start), now, out)
            room = True
    return room


def _end_on_devices(
    t: PoolTables, node: Node, devices: set[str], end: float, now: float, out: list[Decision]
) -> None:
    """End (``device-lost``, at ``end``) the node's leases on any of ``devices``."""
    for lease_id in sorted(node.leases):
        if devices.intersection(t.leases.get(lease_id).device_ids):
            t.end_lease(lease_id, "device-lost", end, now, out)
