"""The pool's nodes and devices in the database: rows, and the node statements.

Part of :class:`~tether.pool._store.Store` (see its theory of operation): no
policy, no clock; every method runs inside the caller's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tether.pool._db import Tx
from tether.pool._model import DeviceSpec, NodeSpec
from tether.pool._roster import NodeRecord
from tether.poolapi import NotFound

__all__ = ["DeviceRow", "NodeRow", "NodeStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRow:
    node_name: str
    device_id: str
    vendor: str
    model: str
    memory_bytes: int
    arch: str
    frameworks: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    name: str
    address: str
    schedulable: str  # active | cordoned | drained (the admin's say)
    lost: bool
    registered_at: float
    last_heartbeat: float
    info: dict[str, Any]


class NodeStore:
    """Nodes, their devices and registrations."""

    def nodes_tx(self, tx: Tx) -> list[NodeRow]:
        return [
            NodeRow(
                name=r["name"],
                address=r["address"],
                schedulable=r["schedulable"],
                lost=bool(r["lost"]),
                registered_at=float(r["registered_at"]),
                last_heartbeat=float(r["last_heartbeat"]),
                info=json.loads(r["info"]),
            )
            for r in tx.all("SELECT * FROM nodes ORDER BY name")
        ]

    def node_tx(self, tx: Tx, name: str) -> NodeRow:
        for node in self.nodes_tx(tx):
            if node.name == name:
                return node
        raise NotFound(f"no node named {name!r}")

    def devices_tx(self, tx: Tx, node_name: str | None = None) -> list[DeviceRow]:
        if node_name is None:
            rows = tx.all("SELECT * FROM devices ORDER BY node_name, device_id")
        else:
            rows = tx.all(
                "SELECT * FROM devices WHERE node_name = ? ORDER BY device_id", (node_name,)
            )
        return [
            DeviceRow(
                node_name=r["node_name"],
                device_id=r["device_id"],
                vendor=r["vendor"],
                model=r["model"],
                memory_bytes=int(r["memory_bytes"]),
                arch=r["arch"],
                frameworks=json.loads(r["frameworks"]),
            )
            for r in rows
        ]

    def upsert_node_tx(
        self,
        tx: Tx,
        *,
        name: str,
        address: str,
        devices: list[DeviceRow],
        info: dict[str, Any],
        now: float,
    ) -> None:
        """Insert a node, or refresh a known one (keeping its cordon/drain state)."""
        existing = tx.one("SELECT name FROM nodes WHERE name = ?", (name,))
        if existing is None:
            tx.execute(
                "INSERT INTO nodes (name, address, schedulable, lost, registered_at, "
                "last_heartbeat, info) VALUES (?, ?, 'active', ?, ?, ?, ?)",
                (name, address, False, now, now, json.dumps(info)),
            )
        else:
            tx.execute(
                "UPDATE nodes SET address = ?, lost = ?, registered_at = ?, last_heartbeat = ?, "
                "info = ? WHERE name = ?",
                (address, False, now, now, json.dumps(info), name),
            )
        tx.execute("DELETE FROM devices WHERE node_name = ?", (name,))
        for d in devices:
            tx.execute(
                "INSERT INTO devices (node_name, device_id, vendor, model, memory_bytes, "
                "arch, frameworks) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    d.device_id,
                    d.vendor,
                    d.model,
                    d.memory_bytes,
                    d.arch,
                    json.dumps(d.frameworks, sort_keys=True),
                ),
            )

    def node_heartbeat_tx(self, tx: Tx, name: str, now: float) -> None:
        tx.execute(
            "UPDATE nodes SET last_heartbeat = ?, lost = ? WHERE name = ?", (now, False, name)
        )

    def set_node_lost_tx(self, tx: Tx, name: str, lost: bool) -> None:
        tx.execute("UPDATE nodes SET lost = ? WHERE name = ?", (lost, name))

    def set_schedulable_tx(self, tx: Tx, name: str, schedulable: str) -> None:
        if tx.execute("UPDATE nodes SET schedulable = ? WHERE name = ?", (schedulable, name)) == 0:
            raise NotFound(f"no node named {name!r}")

    def write_node_tx(
        self, tx: Tx, spec: NodeSpec, *, admin_state: str, lost: bool, last_heartbeat: float
    ) -> None:
        """Write a node as the policy now has it: spec and devices, admin state,
        liveness and last heartbeat (registered now)."""
        self.upsert_node_tx(
            tx,
            name=spec.id,
            address=spec.address,
            devices=[
                DeviceRow(
                    node_name=spec.id,
                    device_id=d.id,
                    vendor=d.vendor,
                    model=d.model,
                    memory_bytes=d.memory_bytes,
                    arch=d.arch,
                    frameworks=dict(d.frameworks),
                )
                for d in spec.devices
            ],
            info={},
            now=last_heartbeat,
        )
        tx.execute(
            "UPDATE nodes SET schedulable = ?, lost = ?, last_heartbeat = ? WHERE name = ?",
            (admin_state, lost, last_heartbeat, spec.id),
        )

    def registration_tx(self, tx: Tx, name: str) -> str | None:
        """The hash of the node's current registration (None: unknown node, or none)."""
        row = tx.one("SELECT registration FROM nodes WHERE name = ?", (name,))
        return None if row is None else row["registration"]

    def set_registration_tx(self, tx: Tx, name: str, registration_hash: str) -> None:
        tx.execute("UPDATE nodes SET registration = ? WHERE name = ?", (registration_hash, name))

    def node_address_tx(self, tx: Tx, name: str) -> tuple[str, str | None] | None:
        """The node's (address, registration hash); None if there is no such node."""
        row = tx.one("SELECT address, registration FROM nodes WHERE name = ?", (name,))
        return None if row is None else (row["address"], row["registration"])

    def node_addresses_tx(self, tx: Tx) -> dict[str, tuple[str, str | None]]:
        """Node name -> (address, registration hash)."""
        return {
            r["name"]: (r["address"], r["registration"])
            for r in tx.all("SELECT name, address, registration FROM nodes")
        }

    def node_records_tx(self, tx: Tx) -> list[NodeRecord]:
        """Every node as the policy sees it (spec with devices, admin state, liveness)."""
        devices: dict[str, list[DeviceSpec]] = {}
        for d in self.devices_tx(tx):
            devices.setdefault(d.node_name, []).append(
                DeviceSpec(
                    id=d.device_id,
                    vendor=d.vendor,
                    model=d.model,
                    memory_bytes=d.memory_bytes,
                    arch=d.arch,
                    frameworks=d.frameworks,
                )
            )
        return [
            NodeRecord(
                node=NodeSpec(id=n.name, address=n.address, devices=tuple(devices.get(n.name, ()))),
                admin_state=n.schedulable,  # type: ignore[arg-type]  # CHECK constraint
                lost=n.lost,
                last_heartbeat=n.last_heartbeat,
            )
            for n in self.nodes_tx(tx)
        ]
